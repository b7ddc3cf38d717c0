//! Who is asking: a bearer token (in the QUIC request or the HTTP `Authorization`
//! header) resolved to a user, and that user's role in the repository asked for.
//! Refusals name the repository, never whether it exists to someone without access.

use axum::http::HeaderMap;

use crate::error::HubError;
use crate::locks::service::LockService;
use crate::meta::{Role, User};
use crate::server::state::HubState;

/// An authorised caller: the user, the repository (id and `owner/name`) and their role.
pub struct Caller {
    pub user: User,
    pub repo: i64,
    pub repo_name: String,
    pub role: Role,
}

impl Caller {
    /// The lock operations, as this caller.
    pub fn locks<'a>(&'a self, state: &'a HubState) -> LockService<'a> {
        LockService {
            store: state.locks.as_ref(),
            repo: self.repo,
            repo_name: &self.repo_name,
            user: &self.user,
            role: self.role,
        }
    }
}

/// Resolves `token` and checks the user has at least `need` on `repo` (`owner/name`).
pub async fn authorize(
    state: &HubState,
    token: &str,
    repo: &str,
    need: Role,
) -> Result<Caller, HubError> {
    let user = match state.meta.user_for_token(token).await? {
        Some(u) => u,
        None if token.is_empty() => {
            return Err(HubError::Unauthenticated(format!(
                "authentication required for {repo}: no token was sent"
            )))
        }
        None => {
            return Err(HubError::Unauthenticated(format!(
                "authentication failed for {repo}: the hub does not know this token"
            )))
        }
    };
    let (repo_id, role) = state.meta.access(repo, &user).await?.ok_or_else(|| {
        HubError::NotFound(format!(
            "repository {repo} not found (or user {} has no access to it)",
            user.name
        ))
    })?;
    if role < need {
        return Err(HubError::Forbidden(format!(
            "user {} may read {repo} but not write to it",
            user.name
        )));
    }
    Ok(Caller {
        user,
        repo: repo_id,
        repo_name: repo.to_string(),
        role,
    })
}

/// The token of an `Authorization: Bearer TOKEN` header; empty without one.
pub fn bearer(headers: &HeaderMap) -> String {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string()
}
