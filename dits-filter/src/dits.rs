//! The Dits filter: clean turns content into a pointer (storing chunks locally), smudge
//! turns a pointer back into content. Content that is not a pointer passes through
//! smudge unchanged, so files committed before tracking still check out.

use std::io::{self, Read, Write};

use dits_core::media::LayoutOptions;
use dits_core::pointer::MAX_POINTER_LEN;
use dits_core::{clean, smudge, CleanError, LocalStore, Pointer, PointerError, SmudgeError};

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("{path}: {source}")]
    Clean { path: String, source: CleanError },
    #[error("{path}: {source}")]
    Smudge { path: String, source: SmudgeError },
    #[error("{path}: {source}")]
    Pointer { path: String, source: PointerError },
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
}

pub struct DitsFilter {
    store: LocalStore,
    layout: LayoutOptions,
}

impl DitsFilter {
    pub fn new(store: LocalStore, layout: LayoutOptions) -> Self {
        DitsFilter { store, layout }
    }

    pub fn store(&mut self) -> &mut LocalStore {
        &mut self.store
    }
}

impl crate::Filter for DitsFilter {
    type Error = FilterError;

    fn clean(&mut self, path: &str, content: &mut dyn Read) -> Result<Vec<u8>, FilterError> {
        let outcome =
            clean(content, &mut self.store, self.layout).map_err(|source| FilterError::Clean {
                path: path.into(),
                source,
            })?;
        if let Some(reason) = &outcome.fallback_reason {
            tracing::debug!(path, reason = %reason, "stored without media structure");
        }
        if let Some(reason) = &outcome.track_split_fallback {
            tracing::debug!(path, reason = %reason, "media chunked by bytes, not by track");
        }
        tracing::debug!(
            path,
            new_objects = outcome.new_objects,
            new_bytes = outcome.new_bytes,
            cached = outcome.cached,
            "cleaned"
        );
        Ok(outcome.pointer.encode().into_bytes())
    }

    fn smudge(
        &mut self,
        path: &str,
        content: &mut dyn Read,
        out: &mut dyn Write,
    ) -> Result<(), FilterError> {
        let io_err = |source| FilterError::Io {
            path: path.into(),
            source,
        };
        // A pointer is at most MAX_POINTER_LEN bytes: read one more to tell them apart.
        let mut head = Vec::with_capacity(MAX_POINTER_LEN + 1);
        content
            .take(MAX_POINTER_LEN as u64 + 1)
            .read_to_end(&mut head)
            .map_err(io_err)?;
        if !Pointer::looks_like_pointer(&head) {
            out.write_all(&head).map_err(io_err)?;
            io::copy(content, out).map_err(io_err)?;
            return Ok(());
        }
        let pointer = Pointer::parse(&head).map_err(|source| FilterError::Pointer {
            path: path.into(),
            source,
        })?;
        smudge(&mut self.store, &pointer, out).map_err(|source| FilterError::Smudge {
            path: path.into(),
            source,
        })
    }
}
