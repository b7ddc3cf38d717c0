//! Objects from the hub for the mount, fetched in the background: the connection is opened
//! when the mount starts, several requests run at once on it while the file system keeps
//! serving, each object is handed to the read waiting for it (and to the RAM cache) the
//! moment it lands and written to the local store behind it. A read only ever blocks in
//! [`Fetcher::wait`], on the objects it needs itself. This module decides nothing about
//! *what* to fetch; [`crate::media`] does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use dits_core::envelope::CompressionHint;
use dits_core::{ChunkId, ChunkStore, LocalStore};
use git_remote_dits::session::Session;
use tokio::sync::{OnceCell, Semaphore};

/// Objects per request to the hub. Chunks average ~80 KiB, so a few MiB per request:
/// small enough that the first of a read-ahead's requests lands soon, big enough that
/// the per-request cost on the hub stays small.
const BATCH_IDS: usize = 32;

/// Read-ahead requests in flight at once when `dits.concurrentTransfers` is not set.
const DEFAULT_PARALLEL: usize = 4;

/// Requests for reads in flight at once (read-ahead has its own, smaller allowance).
const READ_REQUESTS: usize = 8;

/// A request's landed objects are written to the local store (and let go of) whenever
/// they add up to this much. Honest chunks are ~80 KiB, but a hub may send objects of up
/// to 64 MiB: a request of 32 held whole was 2 GiB. Now a request holds at most this plus
/// the object arriving.
const STORE_STEP_BYTES: usize = 16 << 20;

/// The RAM cache the mount reads from; objects land in it.
pub type ObjectCache = moka::sync::Cache<ChunkId, Arc<Vec<u8>>>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// No dits:// remote to fetch from (a repository that never had one).
    #[error("no hub to fetch from: {0}")]
    NoRemote(String),
    /// Connecting, a refusal, a transfer that broke, an object that arrived corrupt.
    #[error("{0}")]
    Hub(String),
}

/// Who is waiting for a request: a read (served first) or read-ahead (bounded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    Read,
    ReadAhead,
}

enum Slot {
    Pending,
    /// Landed; in the RAM cache too, and kept here until it is in the local store.
    Ready(Arc<Vec<u8>>),
    Failed(FetchError),
}

/// Requested objects and their state, with a condition variable rung as each lands.
#[derive(Default)]
struct Slots {
    map: Mutex<HashMap<ChunkId, Slot>>,
    changed: Condvar,
}

impl Slots {
    fn lock(&self) -> MutexGuard<'_, HashMap<ChunkId, Slot>> {
        // A panic while holding the lock leaves a map that is still consistent (every
        // change is a single insert or remove).
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, id: ChunkId, slot: Slot) {
        self.lock().insert(id, slot);
        self.changed.notify_all();
    }
}

/// The hub connection, opened once (at mount time) and shared by every request; a failed
/// attempt is retried by the next request.
struct HubLink {
    url: Result<dits_wire::RemoteUrl, String>,
    session: OnceCell<Session>,
}

impl HubLink {
    async fn session(&self) -> Result<&Session, FetchError> {
        let url = self
            .url
            .as_ref()
            .map_err(|e| FetchError::NoRemote(e.clone()))?;
        self.session
            .get_or_try_init(|| async {
                git_remote_dits::session::connect(url)
                    .await
                    .map_err(|e| FetchError::Hub(format!("{e:#}")))
            })
            .await
    }
}

pub struct Fetcher {
    runtime: tokio::runtime::Runtime,
    link: Arc<HubLink>,
    slots: Arc<Slots>,
    store: Arc<Mutex<LocalStore>>,
    cache: ObjectCache,
    read_ahead: Arc<Semaphore>,
    reads: Arc<Semaphore>,
    /// `dits.cacheSize`: bytes of local store packs to keep (0: no bound).
    store_limit: u64,
    evicting: Arc<AtomicBool>,
    /// Set by each request that stored something; cleared by the evictor that takes it.
    evict_wanted: Arc<AtomicBool>,
}

impl Fetcher {
    /// Starts connecting to the repository's dits:// remote in the background.
    pub fn start(
        store: Arc<Mutex<LocalStore>>,
        cache: ObjectCache,
        store_limit: u64,
    ) -> std::io::Result<Fetcher> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("dits-fetch")
            .enable_all()
            .build()?;
        let url = git_remote_dits::session::default_remote_url().map_err(|e| format!("{e:#}"));
        let link = Arc::new(HubLink {
            url,
            session: OnceCell::new(),
        });
        if link.url.is_ok() {
            let early = link.clone();
            runtime.spawn(async move {
                if let Err(e) = early.session().await {
                    // Not fatal: the first read tries again and reports it then.
                    tracing::debug!("connecting to the hub at mount time: {e}");
                }
            });
        }
        let parallel =
            git_remote_dits::git::config_usize("dits.concurrentTransfers", DEFAULT_PARALLEL)
                .clamp(1, 64);
        Ok(Fetcher {
            runtime,
            link,
            slots: Arc::default(),
            store,
            cache,
            read_ahead: Arc::new(Semaphore::new(parallel)),
            reads: Arc::new(Semaphore::new(READ_REQUESTS)),
            store_limit,
            evicting: Arc::default(),
            evict_wanted: Arc::default(),
        })
    }

    /// Whether `id` has been asked for and is not yet in the local store.
    pub fn requested(&self, id: &ChunkId) -> bool {
        self.slots.lock().contains_key(id)
    }

    /// Asks the hub for those of `ids` not already asked for; returns at once. Reads'
    /// requests start immediately; read-ahead waits for one of the parallel slots.
    pub fn request(&self, ids: &[ChunkId], urgency: Urgency) {
        let mut fresh = Vec::new();
        {
            let mut slots = self.slots.lock();
            for id in ids {
                if !slots.contains_key(id) {
                    slots.insert(*id, Slot::Pending);
                    fresh.push(*id);
                }
            }
        }
        for batch in fresh.chunks(BATCH_IDS) {
            let job = BatchJob {
                ids: batch.to_vec(),
                link: self.link.clone(),
                slots: self.slots.clone(),
                store: self.store.clone(),
                cache: self.cache.clone(),
                permits: match urgency {
                    Urgency::ReadAhead => self.read_ahead.clone(),
                    Urgency::Read => self.reads.clone(),
                },
                store_limit: self.store_limit,
                evicting: self.evicting.clone(),
                evict_wanted: self.evict_wanted.clone(),
            };
            self.runtime.spawn(job.run());
        }
    }

    /// Blocks until requested object `id` lands (or its request fails). `None`: it was not
    /// requested, or is already in the local store.
    pub fn wait(&self, id: &ChunkId) -> Option<Result<Arc<Vec<u8>>, FetchError>> {
        let mut slots = self.slots.lock();
        loop {
            match slots.get(id) {
                None => return None,
                Some(Slot::Ready(bytes)) => return Some(Ok(bytes.clone())),
                Some(Slot::Failed(e)) => {
                    let e = e.clone();
                    // Forgotten, so the next read of it asks again.
                    slots.remove(id);
                    return Some(Err(e));
                }
                Some(Slot::Pending) => {
                    slots = self
                        .slots
                        .changed
                        .wait(slots)
                        .unwrap_or_else(|e| e.into_inner());
                }
            }
        }
    }
}

/// One request to the hub and what follows it: objects into the cache and to waiting
/// reads as they land, then into the local store (one flush per batch), then the store
/// trimmed to `dits.cacheSize`.
struct BatchJob {
    ids: Vec<ChunkId>,
    link: Arc<HubLink>,
    slots: Arc<Slots>,
    store: Arc<Mutex<LocalStore>>,
    cache: ObjectCache,
    permits: Arc<Semaphore>,
    store_limit: u64,
    evicting: Arc<AtomicBool>,
    /// Set by each request that stored something; cleared by the evictor that takes it.
    evict_wanted: Arc<AtomicBool>,
}

/// Fails whatever of a batch is still pending when its job ends, however it ends (a panic,
/// the runtime shutting down): a read waiting for it gets an error, never a hang.
struct PendingGuard {
    slots: Arc<Slots>,
    ids: Vec<ChunkId>,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        let mut slots = self.slots.lock();
        let mut changed = false;
        for id in &self.ids {
            if matches!(slots.get(id), Some(Slot::Pending)) {
                let e = FetchError::Hub("the fetch of this object stopped".into());
                slots.insert(*id, Slot::Failed(e));
                changed = true;
            }
        }
        drop(slots);
        if changed {
            self.slots.changed.notify_all();
        }
    }
}

/// Objects of a request that have landed and are not yet in the local store.
#[derive(Default)]
struct Landed {
    objects: Vec<(ChunkId, Arc<Vec<u8>>)>,
    bytes: usize,
}

/// Writes landed objects to the local store, then lets their slots go (they stay in the
/// RAM cache as long as it has room).
struct Keeper {
    store: Arc<Mutex<LocalStore>>,
    slots: Arc<Slots>,
}

impl Keeper {
    fn keep(&self, landed: Landed) {
        let stored = {
            let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
            landed
                .objects
                .iter()
                .try_for_each(|(id, bytes)| store.put(id, bytes, CompressionHint::Probe).map(drop))
                .and_then(|()| store.flush())
        };
        if let Err(e) = stored {
            // Still in the RAM cache; read again later, it is fetched again.
            tracing::warn!("keeping fetched objects in the local store: {e}");
        }
        {
            let mut slots = self.slots.lock();
            for (id, _) in &landed.objects {
                if matches!(slots.get(id), Some(Slot::Ready(_))) {
                    slots.remove(id);
                }
            }
        }
        self.slots.changed.notify_all();
    }
}

impl BatchJob {
    async fn run(self) {
        let _guard = PendingGuard {
            slots: self.slots.clone(),
            ids: self.ids.clone(),
        };
        let _permit = self.permits.clone().acquire_owned().await;
        let mut landed = Landed::default();
        let result = self.download(&mut landed).await;
        if let Err(e) = &result {
            tracing::debug!(objects = self.ids.len(), "fetch failed: {e}");
            let mut slots = self.slots.lock();
            for id in &self.ids {
                if matches!(slots.get(id), Some(Slot::Pending)) {
                    slots.insert(*id, Slot::Failed(e.clone()));
                }
            }
            drop(slots);
            self.slots.changed.notify_all();
        }
        if landed.objects.is_empty() {
            return;
        }
        let keep = self.keeper();
        let _ = tokio::task::spawn_blocking(move || keep.keep(landed)).await;
        if self.store_limit > 0 {
            // One evictor at a time; one that finishes looks again, so what a request
            // stored while it ran (and so could not start its own) is not left over.
            self.evict_wanted.store(true, Ordering::SeqCst);
            while self.evict_wanted.load(Ordering::SeqCst)
                && !self.evicting.swap(true, Ordering::SeqCst)
            {
                self.evict_wanted.store(false, Ordering::SeqCst);
                self.enforce_store_limit().await;
                self.evicting.store(false, Ordering::SeqCst);
            }
        }
    }

    async fn download(&self, landed: &mut Landed) -> Result<(), FetchError> {
        let session = self.link.session().await?;
        let keep = self.keeper();
        session
            .hub
            .get_objects(&self.ids, |id, bytes| {
                let bytes = Arc::new(bytes);
                self.cache.insert(id, bytes.clone());
                self.slots.set(id, Slot::Ready(bytes.clone()));
                landed.bytes += bytes.len();
                landed.objects.push((id, bytes));
                if landed.bytes >= STORE_STEP_BYTES {
                    // The fetch runtime has worker threads to spare for this.
                    let step = std::mem::take(landed);
                    tokio::task::block_in_place(|| keep.keep(step));
                }
                Ok(())
            })
            .await
            .map_err(|e| FetchError::Hub(format!("{:#}", session.explain(e))))
    }

    fn keeper(&self) -> Keeper {
        Keeper {
            store: self.store.clone(),
            slots: self.slots.clone(),
        }
    }

    /// Evicts packs (least recently used first) until the store is within its limit.
    /// Packs holding anything the hub lacks (unpushed work) are never evicted.
    async fn enforce_store_limit(&self) {
        let limit = self.store_limit;
        let store = self.store.clone();
        let listed = tokio::task::spawn_blocking(move || {
            let store = store.lock().unwrap_or_else(|e| e.into_inner());
            let mut packs = store.packs().ok()?;
            let total: u64 = packs.iter().map(|p| p.bytes).sum();
            if total <= limit {
                return None;
            }
            packs.sort_by_key(|p| (p.used, p.modified));
            Some((total, packs))
        })
        .await;
        let Ok(Some((mut total, packs))) = listed else {
            return;
        };
        let Ok(session) = self.link.session().await else {
            return;
        };
        for p in packs {
            if total <= limit * 9 / 10 {
                break;
            }
            let store = self.store.clone();
            let name = p.name.clone();
            let ids = tokio::task::spawn_blocking(move || {
                let store = store.lock().unwrap_or_else(|e| e.into_inner());
                store.pack_object_ids(&name)
            })
            .await;
            let Ok(Ok(ids)) = ids else { continue };
            if !matches!(session.hub.missing(&ids).await, Ok(m) if m.is_empty()) {
                continue;
            }
            let store = self.store.clone();
            let name = p.name.clone();
            let evicted = tokio::task::spawn_blocking(move || {
                let mut store = store.lock().unwrap_or_else(|e| e.into_inner());
                store.evict_pack(&name)
            })
            .await;
            match evicted {
                Ok(Ok(freed)) => {
                    tracing::debug!(pack = %p.name, freed, "evicted from the local store");
                    total = total.saturating_sub(freed);
                }
                Ok(Err(e)) => tracing::warn!("evicting {}: {e}", p.name),
                Err(e) => tracing::warn!("evicting {}: {e}", p.name),
            }
        }
    }
}
