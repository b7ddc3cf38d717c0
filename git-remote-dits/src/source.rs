//! Where smudge and the mount get objects the local store lacks: the branch's dits://
//! remote, connected on first need.

use dits_core::LocalStore;

/// Fetches missing media from the repository's dits:// remote, connecting on first need.
#[derive(Default)]
pub struct HubSource {
    connection: Option<(tokio::runtime::Runtime, crate::session::Session)>,
}

impl HubSource {
    /// The connection, made on first need; `None` when there is no dits:// remote.
    fn connection(
        &mut self,
    ) -> Result<Option<&(tokio::runtime::Runtime, crate::session::Session)>, String> {
        if self.connection.is_none() {
            let Ok(url) = crate::session::default_remote_url() else {
                return Ok(None);
            };
            let runtime = crate::runtime().map_err(|e| e.to_string())?;
            let session = runtime
                .block_on(crate::session::connect(&url))
                .map_err(|e| format!("{e:#}"))?;
            self.connection = Some((runtime, session));
        }
        Ok(self.connection.as_ref())
    }
}

impl dits_filter::ObjectSource for HubSource {
    fn holds(&mut self, ids: &[dits_core::ChunkId]) -> Result<bool, String> {
        let Some((runtime, session)) = self.connection()? else {
            return Ok(false);
        };
        let missing = runtime
            .block_on(session.hub.missing(ids))
            .map_err(|e| e.to_string())?;
        Ok(missing.is_empty())
    }

    fn fetch(&mut self, store: &mut LocalStore, ids: &[dits_core::ChunkId]) -> Result<(), String> {
        // No dits:// remote: nothing to fetch from; smudge then names the missing object.
        let Some((runtime, session)) = self.connection()? else {
            return Ok(());
        };
        runtime
            .block_on(crate::transfer::fetch_missing(session, store, ids, false))
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    }
}
