//! The HTTPS API on the TCP twin of the QUIC port: the Git LFS-shaped lock API and refs
//! per repository (authenticated by bearer token), and the operator's routes (health,
//! readiness, metrics, stats) in [`crate::server::status`]. Errors answer with the status
//! of [`HubError::codes`] and a `{"message"}` body.

use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use dits_wire::url::valid_name;
use dits_wire::wire::{LockListResult, LockResult, LockVerifyResult, RefsResult, UnlockResult};

use crate::error::HubError;
use crate::meta::Role;
use crate::server::auth::{authorize, bearer, Caller};
use crate::server::state::HubState;
use crate::server::status;

pub fn router(state: Arc<HubState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/api/v1/stats", get(status::stats))
        .route("/metrics", get(status::metrics))
        .route("/readyz", get(status::readyz))
        .route("/api/v1/repos/{owner}/{name}/refs", get(refs))
        .route("/api/v1/repos/{owner}/{name}/deps", get(deps))
        .route(
            "/api/v1/repos/{owner}/{name}/derived/{recipe}/{kind}",
            get(derived_object),
        )
        .route(
            "/api/v1/repos/{owner}/{name}/locks",
            get(list_locks).post(create_lock),
        )
        .route(
            "/api/v1/repos/{owner}/{name}/locks/verify",
            post(verify_locks),
        )
        .route(
            "/api/v1/repos/{owner}/{name}/locks/{id}/unlock",
            post(unlock),
        )
        .merge(crate::web::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            status::observe_http,
        ))
        .with_state(state)
}

/// Authorises an HTTP request on OWNER/NAME with at least `need`.
async fn caller(
    state: &HubState,
    owner: &str,
    name: &str,
    headers: &HeaderMap,
    need: Role,
) -> Result<Caller, HubError> {
    if !valid_name(owner) || !valid_name(name) {
        return Err(HubError::BadRequest("invalid repository name".into()));
    }
    authorize(state, &bearer(headers), &format!("{owner}/{name}"), need).await
}

/// A poster, strip or proxy the workers made of an asset the repository holds, whole or
/// one byte range (`Range`), for players and pages.
async fn derived_object(
    State(state): State<Arc<HubState>>,
    UrlPath((owner, name, recipe, kind)): UrlPath<(String, String, String, String)>,
    headers: HeaderMap,
) -> Result<axum::response::Response, HubError> {
    let caller = caller(&state, &owner, &name, &headers, Role::Read).await?;
    let (found, kind) = crate::server::derived::find(&state, caller.repo, &recipe, &kind).await?;
    let range = headers
        .get(axum::http::header::RANGE)
        .and_then(|v| v.to_str().ok());
    Ok(crate::server::derived::http_answer(
        state.clone(),
        found,
        kind,
        range,
    ))
}

/// A JSON body, with a message that says what is wrong with it (an empty body is `{}`).
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, HubError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        HubError::BadRequest(format!(
            "the request body is not the JSON this endpoint takes: {e}"
        ))
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateLockBody {
    path: String,
    #[serde(default)]
    branch: Option<String>,
    /// Git LFS clients send the ref they are on; informational here.
    #[serde(default, rename = "ref")]
    _ref: Option<serde_json::Value>,
}

async fn create_lock(
    State(state): State<Arc<HubState>>,
    UrlPath((owner, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<LockResult>), HubError> {
    let caller = caller(&state, &owner, &name, &headers, Role::Read).await?;
    let body: CreateLockBody = json_body(&body)?;
    let created = caller
        .locks(&state)
        .create(&body.path, body.branch.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(serde::Deserialize)]
struct ListQuery {
    path: Option<String>,
    id: Option<String>,
    owner: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

async fn list_locks(
    State(state): State<Arc<HubState>>,
    UrlPath((owner, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
    query: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<LockListResult>, HubError> {
    let caller = caller(&state, &owner, &name, &headers, Role::Read).await?;
    let axum::extract::Query(q) =
        query.map_err(|e| HubError::BadRequest(format!("bad query: {e}")))?;
    let page = caller
        .locks(&state)
        .list(q.path, q.id, q.owner, q.cursor, q.limit)
        .await?;
    Ok(Json(page))
}

#[derive(serde::Deserialize)]
struct VerifyBody {
    #[serde(default)]
    paths: Option<Vec<String>>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default, rename = "ref")]
    _ref: Option<serde_json::Value>,
}

async fn verify_locks(
    State(state): State<Arc<HubState>>,
    UrlPath((owner, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<LockVerifyResult>, HubError> {
    let caller = caller(&state, &owner, &name, &headers, Role::Read).await?;
    let body: VerifyBody = json_body(&body)?;
    let page = caller
        .locks(&state)
        .verify(body.paths, body.cursor, body.limit)
        .await?;
    Ok(Json(page))
}

#[derive(serde::Deserialize)]
struct UnlockBody {
    #[serde(default)]
    force: bool,
    #[serde(default, rename = "ref")]
    _ref: Option<serde_json::Value>,
}

async fn unlock(
    State(state): State<Arc<HubState>>,
    UrlPath((owner, name, id)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<UnlockResult>, HubError> {
    let caller = caller(&state, &owner, &name, &headers, Role::Read).await?;
    let body: UnlockBody = json_body(&body)?;
    let released = caller.locks(&state).unlock(&id, body.force).await?;
    Ok(Json(released))
}

#[derive(serde::Deserialize)]
struct DepsQuery {
    path: String,
    rev: Option<String>,
}

/// The commit `rev` (a ref name, a branch or tag name, or a commit id) names in the
/// caller's repository, once the mirror holds it; NotFound otherwise.
pub async fn commit_of(state: &HubState, caller: &Caller, rev: &str) -> Result<String, HubError> {
    let repo = &caller.repo_name;
    let is_oid = rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit());
    let commit = if is_oid {
        rev.to_ascii_lowercase()
    } else {
        let refs = state.meta.refs(caller.repo).await?;
        [
            rev.to_string(),
            format!("refs/heads/{rev}"),
            format!("refs/tags/{rev}"),
        ]
        .iter()
        .find_map(|r| refs.get(r).cloned())
        .ok_or_else(|| HubError::NotFound(format!("{repo} has no ref {rev}")))?
    };
    crate::server::refs::mirror_packs(state, caller.repo, &[]).await?;
    if !state.mirror.has_commit(caller.repo, &commit).await? {
        return Err(HubError::NotFound(format!("{repo} has no commit {commit}")));
    }
    Ok(commit)
}

/// `GET …/deps?path=PROJECT&rev=REV`: the media a project file references at a commit
/// (a ref name, a branch, or a commit id; default the `main` branch), resolved in the
/// hub's mirror exactly as `git dits deps --rev` resolves it, without media.
async fn deps(
    State(state): State<Arc<HubState>>,
    UrlPath((owner, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
    query: Result<axum::extract::Query<DepsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, HubError> {
    let caller = caller(&state, &owner, &name, &headers, Role::Read).await?;
    let axum::extract::Query(q) = query.map_err(|e| {
        HubError::BadRequest(format!("bad query (give path=PROJECT, and rev=REV): {e}"))
    })?;
    let rev = q.rev.unwrap_or_else(|| "main".to_string());
    let commit = commit_of(&state, &caller, &rev).await?;
    use dits_core::project::deps::DepsError;
    match state
        .mirror
        .project_deps(caller.repo, &commit, &q.path)
        .await?
    {
        Ok(deps) => Ok(Json(serde_json::json!({
            "project": q.path,
            "rev": rev,
            "commit": commit,
            "references": deps.iter().map(|d| d.to_json()).collect::<Vec<_>>(),
        }))),
        Err(DepsError::Absent(doc)) => Err(HubError::NotFound(format!("{doc} is not in {rev}"))),
        Err(e) => Err(HubError::BadRequest(e.to_string())),
    }
}

async fn refs(
    State(state): State<Arc<HubState>>,
    UrlPath((owner, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<RefsResult>, HubError> {
    let caller = caller(&state, &owner, &name, &headers, Role::Read).await?;
    let refs = state.meta.refs(caller.repo).await?;
    Ok(Json(RefsResult { refs }))
}
