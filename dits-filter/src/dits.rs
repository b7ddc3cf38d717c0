//! The Dits filter: clean turns content into a pointer (storing chunks locally), smudge
//! turns a pointer back into content. Content that is not a pointer passes through
//! smudge unchanged, so files committed before tracking still check out.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use dits_core::keyring::Keyring;
use dits_core::media::LayoutOptions;
use dits_core::pointer::AnyPointer;
use dits_core::pointer::MAX_POINTER_LEN;
use dits_core::{
    clean, smudge, ChunkId, ChunkStore, CleanError, LocalStore, Pointer, PointerError, SmudgeError,
    StoreError,
};

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("{path}: {source}")]
    Clean { path: String, source: CleanError },
    #[error("{path}: {source}")]
    Smudge { path: String, source: SmudgeError },
    #[error("{path}: {source}")]
    Pointer { path: String, source: PointerError },
    #[error("{path}: fetching media: {source}")]
    Fetch { path: String, source: SourceError },
    /// The local store failed while working out what to fetch.
    #[error("{path}: fetching media: {source}")]
    Store { path: String, source: StoreError },
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    /// The repository is encrypted and this user cannot seal new content.
    #[error("{path}: {source}")]
    Key {
        path: String,
        source: dits_core::keyring::KeyError,
    },
    /// The pointer's file is bigger than the disk has room for; nothing was fetched.
    #[error("{path}: the file is {size} bytes but the disk holding the working tree has {free} bytes free; nothing was fetched. Free some space, or check out without media (GIT_DITS_SKIP_SMUDGE=1) and read it through `git dits mount`")]
    NoRoom { path: String, size: u64, free: u64 },
}

/// Why an [`ObjectSource`] could not answer. Each carries a sentence for the user (the
/// source names itself and the objects); the variant says whether trying again may help.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source could not be reached or is overloaded: trying again later may work.
    #[error("{0}")]
    Unavailable(String),
    /// The source lacks what was asked for, or won't give it to this user.
    #[error("{0}")]
    NotFound(String),
    /// Anything else: a refused token, an untrusted certificate, a local store failure.
    #[error("{0}")]
    Other(String),
}

/// Where smudge gets objects the local store lacks (the hub, for a clone).
pub trait ObjectSource {
    /// Brings `ids` into `store`, durably.
    fn fetch(&mut self, store: &mut LocalStore, ids: &[ChunkId]) -> Result<(), SourceError>;
    /// Whether the source holds every one of `ids` (so a local copy may be dropped).
    fn holds(&mut self, _ids: &[ChunkId]) -> Result<bool, SourceError> {
        Ok(false)
    }
}

/// Object ids the delayed fetch collects before it fetches them (32 MiB of ids): the
/// objects of any number of delayed files are fetched in rounds of at most this many.
const FETCH_ROUND_IDS: usize = 1 << 20;

pub struct DitsFilter {
    store: LocalStore,
    layout: LayoutOptions,
    source: Option<Box<dyn ObjectSource>>,
    /// `GIT_DITS_SKIP_SMUDGE=1`: leave pointers in the working tree.
    skip_smudge: bool,
    /// Where Git's pathnames resolve (the top of the work tree), so clean can read the
    /// file a stream came from instead of copying the stream; `None` never looks.
    work_tree: Option<PathBuf>,
    /// Seals pointers in an encrypted repository and opens them.
    keyring: Keyring,
    /// Whether a pointer this user holds no key for was already reported.
    reported_keyless: bool,
}

impl DitsFilter {
    pub fn new(store: LocalStore, layout: LayoutOptions) -> Self {
        DitsFilter {
            store,
            layout,
            source: None,
            skip_smudge: false,
            work_tree: None,
            keyring: Keyring::plain(),
            reported_keyless: false,
        }
    }

    /// Seals and opens pointers with `keyring` (an encrypted repository's).
    pub fn with_keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = keyring;
        self
    }

    /// Lets clean read the working-tree file under `top` a stream came from (compared with
    /// the stream byte for byte) instead of spooling the stream.
    pub fn reading_work_tree(mut self, top: PathBuf) -> Self {
        self.work_tree = Some(top);
        self
    }

    pub fn with_source(mut self, source: Box<dyn ObjectSource>) -> Self {
        self.source = Some(source);
        self
    }

    pub fn skipping_smudge(mut self, skip: bool) -> Self {
        self.skip_smudge = skip;
        self
    }

    /// Refuses a pointer whose file could not fit on the disk of the working tree (Git
    /// runs the filter at its top): a repository's pointer may claim any size, and one
    /// that agrees with its recipe would otherwise be fetched and written until the disk
    /// filled, before the whole-file hash could fail.
    fn check_room(path: &str, pointer: &Pointer) -> Result<(), FilterError> {
        match dits_core::disk::free_space(std::path::Path::new(".")) {
            Some(free) if pointer.size > free => Err(FilterError::NoRoom {
                path: path.into(),
                size: pointer.size,
                free,
            }),
            _ => Ok(()),
        }
    }

    /// Fetches what `pointer` needs and the store lacks, if there is a source.
    fn hydrate(&mut self, path: &str, pointer: &Pointer) -> Result<(), FilterError> {
        let Some(source) = self.source.as_mut() else {
            return Ok(());
        };
        let fail = |source| FilterError::Fetch {
            path: path.into(),
            source,
        };
        let store_err = |source| FilterError::Store {
            path: path.into(),
            source,
        };
        if !self.store.contains(&pointer.recipe).map_err(store_err)? {
            source
                .fetch(&mut self.store, &[pointer.recipe])
                .map_err(fail)?;
        }
        let recipe =
            dits_core::smudge::load_recipe(&mut self.store, pointer).map_err(|source| {
                FilterError::Smudge {
                    path: path.into(),
                    source,
                }
            })?;
        let missing =
            dits_core::smudge::missing_objects(&self.store, &recipe).map_err(store_err)?;
        if !missing.is_empty() {
            source.fetch(&mut self.store, &missing).map_err(fail)?;
        }
        Ok(())
    }

    /// Whether `pointer`'s recipe or any object it lists is absent from the local store.
    fn needs_fetch(&mut self, pointer: &Pointer) -> bool {
        if !self.store.contains(&pointer.recipe).unwrap_or(false) {
            return true;
        }
        match dits_core::smudge::load_recipe(&mut self.store, pointer) {
            Ok(recipe) => dits_core::smudge::missing_objects(&self.store, &recipe)
                .map(|m| !m.is_empty())
                .unwrap_or(true),
            // A corrupt recipe is reported by the smudge itself, not fetched around.
            Err(_) => false,
        }
    }

    pub fn store(&mut self) -> &mut LocalStore {
        &mut self.store
    }

    /// The text Git commits for `pointer`. In an encrypted repository, content this
    /// machine already committed or checked out keeps the sealed pointer it had (so it
    /// keeps its key across a rotation, and a member who no longer holds the current key
    /// still sees it unchanged); new content is sealed under the current key, which a
    /// member without it cannot do.
    fn pointer_text(&mut self, path: &str, pointer: &Pointer) -> Result<String, FilterError> {
        if !self.keyring.is_encrypted() {
            return Ok(pointer.encode());
        }
        let store_err = |source| FilterError::Store {
            path: path.into(),
            source,
        };
        let known = self
            .store
            .sealed_pointer(&pointer.oid, pointer.size)
            .map_err(store_err)?;
        if let Some(text) = known {
            // Recorded here, only ever from a sealed pointer this machine made or opened
            // for this content.
            return Ok(text);
        }
        let text = self
            .keyring
            .encode_pointer(pointer)
            .map_err(|source| FilterError::Key {
                path: path.into(),
                source,
            })?;
        self.store
            .remember_sealed_pointer(&pointer.oid, pointer.size, &text)
            .map_err(store_err)?;
        Ok(text)
    }
}

impl crate::Filter for DitsFilter {
    type Error = FilterError;

    fn clean(&mut self, path: &str, content: &mut dyn Read) -> Result<Vec<u8>, FilterError> {
        // A file that is already a pointer (a GIT_DITS_SKIP_SMUDGE checkout) stays that
        // pointer, as with Git LFS; otherwise `git status` would see every such file as
        // modified.
        let mut head = Vec::with_capacity(MAX_POINTER_LEN + 1);
        content
            .take(MAX_POINTER_LEN as u64 + 1)
            .read_to_end(&mut head)
            .map_err(|source| FilterError::Io {
                path: path.into(),
                source,
            })?;
        if head.len() <= MAX_POINTER_LEN
            && Pointer::looks_like_pointer(&head)
            && AnyPointer::parse(&head).is_ok()
        {
            return Ok(head);
        }
        let mut content = io::Cursor::new(head).chain(content);
        let working_file = match &self.work_tree {
            Some(top) if !path.is_empty() => Some(top.join(path)),
            _ => None,
        };
        let outcome = clean(
            &mut content,
            working_file.as_deref(),
            &mut self.store,
            self.layout,
        )
        .map_err(|source| FilterError::Clean {
            path: path.into(),
            source,
        })?;
        if let Some(reason) = &outcome.fallback_reason {
            tracing::debug!(path, reason = %reason, "stored without media structure");
        }
        if let Some(limit) = &outcome.sample_limit {
            tracing::warn!(
                "{path}: {limit}; stored chunked by bytes, without track-level splitting (the file's sample tables are implausible, perhaps hostile)"
            );
        }
        if let Some(reason) = &outcome.track_split_fallback {
            tracing::debug!(path, reason = %reason, "media chunked by bytes, not by track");
        }
        tracing::debug!(
            path,
            new_objects = outcome.new_objects,
            new_bytes = outcome.new_bytes,
            cached = outcome.cached,
            source = ?outcome.source,
            "cleaned"
        );
        Ok(self.pointer_text(path, &outcome.pointer)?.into_bytes())
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
        let parsed = AnyPointer::parse(&head);
        let sealed = matches!(parsed, Ok(AnyPointer::Sealed(_)));
        let pointer = match parsed.and_then(|any| self.keyring.open(&any)) {
            Ok(p) => p,
            // Without the key the file checks out as its pointer (as with
            // GIT_DITS_SKIP_SMUDGE), so a clone still completes; `pull-media` fills it
            // in once the key is granted.
            Err(source @ PointerError::Encrypted { .. }) => {
                if !std::mem::replace(&mut self.reported_keyless, true) {
                    eprintln!("dits: {path}: {source}");
                }
                return out.write_all(&head).map_err(io_err);
            }
            Err(source) => {
                return Err(FilterError::Pointer {
                    path: path.into(),
                    source,
                })
            }
        };
        if sealed {
            let text = String::from_utf8_lossy(&head);
            self.store
                .remember_sealed_pointer(&pointer.oid, pointer.size, &text)
                .map_err(|source| FilterError::Store {
                    path: path.into(),
                    source,
                })?;
        }
        if self.skip_smudge {
            return out.write_all(&head).map_err(io_err);
        }
        Self::check_room(path, &pointer)?;
        self.hydrate(path, &pointer)?;
        smudge(&mut self.store, &pointer, out).map_err(|source| FilterError::Smudge {
            path: path.into(),
            source,
        })
    }

    fn wants_delay(&mut self, path: &str, content: &[u8]) -> bool {
        if self.skip_smudge || self.source.is_none() || !Pointer::looks_like_pointer(content) {
            return false;
        }
        match self.keyring.parse_pointer(content) {
            // One with no room is refused by its smudge at once, not fetched first.
            Ok(pointer) => Self::check_room(path, &pointer).is_ok() && self.needs_fetch(&pointer),
            Err(_) => false,
        }
    }

    /// One fetch of every delayed file's missing recipes, then one of all their missing
    /// objects: the transfer's parallel streams then work across files.
    fn fetch_delayed(&mut self, delayed: &[(String, Vec<u8>)]) -> Result<(), FilterError> {
        let Some(source) = self.source.as_mut() else {
            return Ok(());
        };
        let pointers: Vec<Pointer> = delayed
            .iter()
            .filter_map(|(_, c)| self.keyring.parse_pointer(c).ok())
            .collect();
        let what = format!("{} delayed files", delayed.len());
        let fail = |source| FilterError::Fetch {
            path: what.clone(),
            source,
        };
        let store_err = |source| FilterError::Store {
            path: what.clone(),
            source,
        };
        let mut recipes = Vec::new();
        for p in &pointers {
            if !self.store.contains(&p.recipe).map_err(store_err)? && !recipes.contains(&p.recipe) {
                recipes.push(p.recipe);
            }
        }
        if !recipes.is_empty() {
            source.fetch(&mut self.store, &recipes).map_err(fail)?;
        }
        let mut missing = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for p in &pointers {
            // Unreadable recipes (and ones of another size than their pointer) are left
            // for each path's smudge to report.
            let Ok(recipe) = dits_core::smudge::load_recipe(&mut self.store, p) else {
                continue;
            };
            for id in dits_core::smudge::missing_objects(&self.store, &recipe).map_err(store_err)? {
                if seen.insert(id) {
                    missing.push(id);
                }
            }
            // The list of ids is bounded too, whatever the delayed files' recipes name.
            if missing.len() >= FETCH_ROUND_IDS {
                source.fetch(&mut self.store, &missing).map_err(fail)?;
                missing.clear();
                seen.clear();
            }
        }
        if !missing.is_empty() {
            source.fetch(&mut self.store, &missing).map_err(fail)?;
        }
        Ok(())
    }
}
