//! Where smudge and the mount get objects the local store lacks: the branch's dits://
//! remote, connected on first need.

use dits_core::LocalStore;
use dits_filter::SourceError;
use dits_wire::wire::ErrorCode;

use crate::client::HubError;

/// Fetches missing media from the repository's dits:// remote, connecting on first need.
#[derive(Default)]
pub struct HubSource {
    connection: Option<(tokio::runtime::Runtime, crate::session::Session)>,
}

impl HubSource {
    /// The connection, made on first need; `None` when there is no dits:// remote.
    fn connection(
        &mut self,
    ) -> Result<Option<&(tokio::runtime::Runtime, crate::session::Session)>, SourceError> {
        if self.connection.is_none() {
            let Ok(url) = crate::session::default_remote_url() else {
                return Ok(None);
            };
            let runtime = crate::runtime().map_err(|e| SourceError::Other(format!("{e:#}")))?;
            let session = runtime
                .block_on(crate::session::connect(&url))
                .map_err(|e| from_anyhow(&e))?;
            self.connection = Some((runtime, session));
        }
        Ok(self.connection.as_ref())
    }
}

impl dits_filter::ObjectSource for HubSource {
    fn holds(&mut self, ids: &[dits_core::ChunkId]) -> Result<bool, SourceError> {
        let Some((runtime, session)) = self.connection()? else {
            return Ok(false);
        };
        let missing = runtime
            .block_on(session.hub.missing(ids))
            .map_err(|e| from_hub(&e, e.to_string()))?;
        Ok(missing.is_empty())
    }

    fn fetch(
        &mut self,
        store: &mut LocalStore,
        ids: &[dits_core::ChunkId],
    ) -> Result<(), SourceError> {
        // No dits:// remote: nothing to fetch from; smudge then names the missing object.
        let Some((runtime, session)) = self.connection()? else {
            return Ok(());
        };
        runtime
            .block_on(crate::transfer::fetch_missing(session, store, ids, false))
            .map(|_| ())
            .map_err(|e| from_anyhow(&e))
    }
}

/// Sorts a hub error by whether trying again may help; `message` is what the user sees.
fn from_hub(e: &HubError, message: String) -> SourceError {
    match (e, e.code()) {
        (HubError::Transport(_), _) | (_, Some(ErrorCode::Unavailable)) => {
            SourceError::Unavailable(message)
        }
        (_, Some(ErrorCode::NotFound)) => SourceError::NotFound(message),
        _ => SourceError::Other(message),
    }
}

/// The whole chain of causes as the message; sorted by the hub error in it, if any (a
/// refusal already put into words by `Session::explain` is only text, hence `Other`).
fn from_anyhow(e: &anyhow::Error) -> SourceError {
    let message = format!("{e:#}");
    match e.chain().find_map(|c| c.downcast_ref::<HubError>()) {
        Some(hub) => from_hub(hub, message),
        None => SourceError::Other(message),
    }
}
