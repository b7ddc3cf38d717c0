//! What every request handler shares: the backends a hub process opened and its
//! counters ([`HubState`]), and the settings it was started with ([`ServeOptions`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

use crate::backends::{open_blobs, open_locks, open_metadata};
use crate::blobs::BlobStore;
use crate::locks::LockStore;
use crate::meta::MetaStore;
use crate::metrics::{Metrics, Stats};
use crate::mirror::GitMirror;
use crate::server::limits::Limits;

/// The backends of one hub process, shared by every request.
pub struct HubState {
    pub meta: Box<dyn MetaStore>,
    pub blobs: Box<dyn BlobStore>,
    pub locks: Box<dyn LockStore>,
    pub mirror: GitMirror,
    pub stats: Stats,
    pub metrics: Metrics,
    /// What any peer may make the hub hold (connections, header bytes).
    pub limits: Limits,
    /// Objects read since the access times were last written.
    pub access: crate::server::tier::AccessLog,
    /// Whether pushes queue transcodes of the video they bring.
    pub transcode: bool,
    /// Scratch space for workers (an asset rebuilt for transcoding).
    pub work: PathBuf,
    /// With direct transfers on, how long signed URLs last.
    pub direct_ttl: Option<std::time::Duration>,
    /// Wakes this process's idle workers when a request queued a job a client waits for.
    pub job_queued: tokio::sync::Notify,
    /// How long a browser stays signed in to the pages (seconds).
    pub session_ttl: u32,
}

/// The settings `dits-hub serve` (and `check-config`) runs with.
pub struct ServeOptions {
    pub data: PathBuf,
    pub listen: SocketAddr,
    /// `postgres://…` for metadata (and locks without Redis); none: SQLite in `data`.
    pub metadata: Option<String>,
    /// `s3://BUCKET[/PREFIX]` for blobs; none: the data directory.
    pub objects: Option<String>,
    /// `redis://…` for locks; none: with the metadata.
    pub locks: Option<String>,
    /// A CA-issued certificate chain and key (PEM); without them the hub is self-signed.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Run garbage collection this often (seconds); none: only `dits-hub gc` does.
    pub gc_every: Option<u64>,
    /// The collection's grace period (seconds).
    pub gc_grace: i64,
    /// Run the cold-tier reaper this often (seconds); none: only `dits-hub reaper` does.
    pub reaper_every: Option<u64>,
    /// Queue a scrub of every pack this often (seconds); none: only `dits-hub scrub` does.
    pub scrub_every: Option<u64>,
    /// Workers this process runs beside serving (`dits-hub worker` runs more elsewhere).
    pub workers: u32,
    /// Queue a transcode (poster, strip, proxy) of each new video a push brings.
    pub transcode: bool,
    /// Offer clients signed URLs into the S3 store (seconds they last); none: every
    /// object byte goes through the hub.
    pub direct_ttl: Option<u64>,
    /// How long a browser stays signed in to the pages (seconds).
    pub session_ttl: u32,
}

/// Links not seen for a day, and blobs dead for a day, may be collected: far longer than
/// any push or read in flight.
pub const DEFAULT_GC_GRACE: i64 = 24 * 3600;

impl ServeOptions {
    /// The embedded default on `data`: SQLite, a local object directory, locks in SQLite,
    /// a self-signed certificate, a free loopback port.
    pub fn embedded(data: PathBuf) -> ServeOptions {
        ServeOptions {
            data,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            metadata: None,
            objects: None,
            locks: None,
            tls_cert: None,
            tls_key: None,
            gc_every: None,
            gc_grace: DEFAULT_GC_GRACE,
            reaper_every: None,
            scrub_every: None,
            workers: 1,
            transcode: false,
            direct_ttl: None,
            session_ttl: crate::web::session::SESSION_AGE,
        }
    }
}

impl HubState {
    /// Opens every backend the options name (inside the hub's runtime).
    pub async fn open(options: &ServeOptions) -> anyhow::Result<HubState> {
        let data = &options.data;
        crate::private::create_dir(data).with_context(|| format!("creating {}", data.display()))?;
        let metadata = open_metadata(data, options.metadata.as_deref()).await?;
        let (meta, locks) = open_locks(metadata, options.locks.as_deref()).await?;
        anyhow::ensure!(
            options.direct_ttl.is_none() || options.objects.is_some(),
            "--direct-transfers needs an S3 object store (--objects s3://BUCKET): a local directory cannot sign URLs"
        );
        Ok(HubState {
            meta,
            blobs: open_blobs(data, options.objects.as_deref())?,
            locks,
            mirror: GitMirror::new(data.join("git")),
            metrics: Default::default(),
            stats: Stats::default(),
            limits: Limits::default(),
            access: Default::default(),
            transcode: options.transcode,
            work: data.join("work"),
            direct_ttl: options.direct_ttl.map(std::time::Duration::from_secs),
            job_queued: tokio::sync::Notify::new(),
            session_ttl: options.session_ttl,
        })
    }
}
