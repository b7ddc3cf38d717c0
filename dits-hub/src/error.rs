//! What can go wrong serving a request ([`HubError`]), the one table that says how each
//! kind reaches a client (wire [`ErrorCode`] and HTTP status), and the marker for a backend
//! that did not answer ([`Unavailable`]). A client gets a sentence it can act on; the
//! chain of causes of an internal error goes to the hub's log, never over the wire.
//!
//! This module sits below every other: it imports from none of them but [`crate::names`].

use axum::http::StatusCode;
use axum::response::IntoResponse;
use dits_wire::wire::{ErrorCode, Lock, LockResult, Response};

use crate::names::PathError;

/// Why a request was not served.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// No token, or a token the hub does not know.
    #[error("{0}")]
    Unauthenticated(String),
    /// No such repository or object, or no access to it (indistinguishable on purpose).
    #[error("{0}")]
    NotFound(String),
    /// The user's role does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// The request itself is malformed: a bad frame, id, name or argument.
    #[error("{0}")]
    BadRequest(String),
    /// A lock path that is not a repository-relative path.
    #[error(transparent)]
    BadPath(#[from] PathError),
    /// Well-formed but refused: bytes that don't hash to their id, a ref update whose data
    /// is incomplete, an upload that is too large.
    #[error("{0}")]
    Rejected(String),
    /// Someone holds the path asked for; the answer carries their lock.
    #[error("{message}")]
    LockHeld { message: String, holder: Box<Lock> },
    /// A backend (database, lock store, object storage) did not answer: nothing was
    /// changed, and the same request may succeed later.
    #[error("{what} unavailable, try again")]
    Unavailable {
        what: &'static str,
        cause: anyhow::Error,
    },
    /// The data asked for is in an archive storage class; a restore has been started.
    #[error("{0}")]
    Restoring(String),
    /// A bug, or a backend failing in a way retrying will not fix.
    #[error("internal hub error; the hub's log has the details")]
    Internal(anyhow::Error),
}

impl HubError {
    /// The one table: each kind's code on the wire and status over HTTP.
    pub fn codes(&self) -> (ErrorCode, StatusCode) {
        match self {
            HubError::Unauthenticated(_) => (ErrorCode::Unauthenticated, StatusCode::UNAUTHORIZED),
            HubError::NotFound(_) => (ErrorCode::NotFound, StatusCode::NOT_FOUND),
            HubError::Forbidden(_) => (ErrorCode::Forbidden, StatusCode::FORBIDDEN),
            HubError::BadRequest(_) | HubError::BadPath(_) => {
                (ErrorCode::BadRequest, StatusCode::BAD_REQUEST)
            }
            HubError::Rejected(_) | HubError::LockHeld { .. } => {
                (ErrorCode::Rejected, StatusCode::CONFLICT)
            }
            HubError::Unavailable { .. } => {
                (ErrorCode::Unavailable, StatusCode::SERVICE_UNAVAILABLE)
            }
            HubError::Restoring(_) => (ErrorCode::Restoring, StatusCode::SERVICE_UNAVAILABLE),
            HubError::Internal(_) => (ErrorCode::Internal, StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

    pub fn code(&self) -> ErrorCode {
        self.codes().0
    }

    pub fn status(&self) -> StatusCode {
        self.codes().1
    }

    /// The lock in the way, for a [`HubError::LockHeld`].
    pub fn holder(&self) -> Option<&Lock> {
        match self {
            HubError::LockHeld { holder, .. } => Some(holder),
            _ => None,
        }
    }

    /// Logs what the client is not told: the cause of an internal or unavailable error
    /// (with its whole chain), or the refusal itself.
    pub fn log(&self, request: &str) {
        match self {
            HubError::Internal(cause) => {
                tracing::error!(request, "internal error: {cause:#}")
            }
            HubError::Unavailable { what, cause } => {
                tracing::warn!(request, "{what} unavailable: {cause:#}")
            }
            refused => tracing::info!(request, message = %refused, "refused"),
        }
    }

    /// The wire answer: code, the user's sentence and, for a held lock, its holder.
    pub fn to_response(&self) -> Response {
        let mut response = Response::error(self.code(), self.to_string());
        if let Some(holder) = self.holder() {
            if let Ok(result) = serde_json::to_value(LockResult {
                lock: holder.clone(),
            }) {
                response.result = result;
            }
        }
        response
    }
}

/// The body of an HTTP error: the sentence, and the holder when a lock is in the way.
#[derive(Debug, serde::Serialize)]
pub struct HttpErrorBody {
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock: Option<Lock>,
}

impl IntoResponse for HubError {
    fn into_response(self) -> axum::response::Response {
        self.log("http");
        let body = HttpErrorBody {
            message: self.to_string(),
            lock: self.holder().cloned(),
        };
        (self.status(), axum::Json(body)).into_response()
    }
}

impl From<anyhow::Error> for HubError {
    /// A backend failure: [`HubError::Unavailable`] when an [`Unavailable`] is anywhere in
    /// its chain (also inside an I/O error), otherwise [`HubError::Internal`].
    fn from(cause: anyhow::Error) -> HubError {
        if let Some(restoring) = marker_in::<Restoring>(&cause) {
            return HubError::Restoring(restoring.to_string());
        }
        match unavailable_in(&cause) {
            Some(what) => HubError::Unavailable { what, cause },
            None => HubError::Internal(cause),
        }
    }
}

impl From<std::io::Error> for HubError {
    fn from(e: std::io::Error) -> HubError {
        anyhow::Error::from(e).into()
    }
}

impl From<dits_wire::wire::WireError> for HubError {
    fn from(e: dits_wire::wire::WireError) -> HubError {
        HubError::Internal(e.into())
    }
}

impl From<tokio::task::JoinError> for HubError {
    fn from(e: tokio::task::JoinError) -> HubError {
        HubError::Internal(e.into())
    }
}

/// A backend the hub needs did not answer (a dropped connection, a stopped server): the
/// request may succeed if retried once it is back, unlike a refusal or a bug.
#[derive(Debug, thiserror::Error)]
#[error("{what} unavailable, try again: {detail}")]
pub struct Unavailable {
    pub what: &'static str,
    pub detail: String,
}

impl Unavailable {
    pub fn new(what: &'static str, detail: impl std::fmt::Display) -> Unavailable {
        Unavailable {
            what,
            detail: detail.to_string(),
        }
    }
}

/// Blob `key` is in an archive storage class and a restore of it is under way: reads
/// fail until it is done.
#[derive(Debug, thiserror::Error)]
#[error("media is in archive storage ({key}); the hub has started restoring it, which takes {estimate}: try again then")]
pub struct Restoring {
    pub key: String,
    pub estimate: &'static str,
}

/// Which backend an [`Unavailable`] in `e`'s chain names, also when wrapped in an I/O
/// error.
pub fn unavailable_in(e: &anyhow::Error) -> Option<&'static str> {
    marker_in::<Unavailable>(e).map(|u| u.what)
}

/// Whether `e` is (or wraps) a [`Restoring`]: data in archive storage, being restored.
pub fn restoring_in(e: &anyhow::Error) -> bool {
    marker_in::<Restoring>(e).is_some()
}

/// The first `M` in `e`'s chain, also when wrapped in an I/O error.
fn marker_in<M: std::error::Error + Send + Sync + 'static>(e: &anyhow::Error) -> Option<&M> {
    e.chain().find_map(|e| {
        e.downcast_ref::<M>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<M>())
        })
    })
}

/// `e` and what caused it, "outer: inner: …" (libraries such as tokio-postgres keep the
/// useful part, e.g. "Connection refused", in the source).
pub fn with_sources(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(inner) = next {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_tell_the_client_nothing_of_their_cause() {
        let e = HubError::from(anyhow::anyhow!("disk on fire at /srv/secret/path"));
        let r = e.to_response();
        assert_eq!(r.code, Some(ErrorCode::Internal));
        let message = r.message.unwrap();
        assert!(!message.contains("secret"), "{message}");
        assert!(message.contains("log"), "{message}");
    }

    #[test]
    fn an_unavailable_backend_is_named_even_inside_an_io_error() {
        let io = std::io::Error::other(Unavailable::new("object store", "connection refused"));
        let e = HubError::from(anyhow::Error::from(io).context("committing a pack"));
        assert_eq!(
            e.codes(),
            (ErrorCode::Unavailable, StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(e.to_string(), "object store unavailable, try again");
    }

    #[test]
    fn a_held_lock_answers_with_its_holder() {
        let holder = Lock {
            id: "7".into(),
            path: "clip.mp4".into(),
            locked_at: "2024-01-01T00:00:00Z".into(),
            owner: dits_wire::wire::LockOwner { name: "bob".into() },
            branch: None,
        };
        let e = HubError::LockHeld {
            message: "clip.mp4 is already locked by bob".into(),
            holder: Box::new(holder.clone()),
        };
        let r = e.to_response();
        assert_eq!(r.code, Some(ErrorCode::Rejected));
        let got: LockResult = serde_json::from_value(r.result).unwrap();
        assert_eq!(got.lock, holder);
    }
}
