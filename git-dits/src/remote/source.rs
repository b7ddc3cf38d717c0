//! Where smudge and the mount get objects the local store lacks: the branch's dits://
//! remote, connected on first need.

use dits_core::LocalStore;

/// Fetches missing media from the repository's dits:// remote, connecting on first need.
#[derive(Default)]
pub struct HubSource {
    connection: Option<(tokio::runtime::Runtime, crate::remote::session::Session)>,
}

impl dits_filter::ObjectSource for HubSource {
    fn fetch(&mut self, store: &mut LocalStore, ids: &[dits_core::ChunkId]) -> Result<(), String> {
        if self.connection.is_none() {
            // No dits:// remote: nothing to fetch from; smudge then names the missing object.
            let Ok(url) = crate::remote::session::default_remote_url() else {
                return Ok(());
            };
            let runtime = crate::remote::runtime().map_err(|e| e.to_string())?;
            let session = runtime
                .block_on(crate::remote::session::connect(&url))
                .map_err(|e| format!("{e:#}"))?;
            self.connection = Some((runtime, session));
        }
        let (runtime, session) = self.connection.as_ref().expect("connected");
        runtime
            .block_on(crate::remote::transfer::fetch_missing(
                session, store, ids, false,
            ))
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    }
}
