//! What the transcode workers make from a stored asset ([`DerivedStore`]): a poster
//! frame, a thumbnail strip, a small proxy. Keyed by the asset's recipe (which fixes its
//! bytes: every object it lists is verified), not by path or commit, so equal assets
//! share them and Git history never names them.

use dits_core::ChunkId;

/// One derived object of an asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derived {
    pub recipe: ChunkId,
    /// [`DerivedKind::as_str`].
    pub kind: String,
    /// Where its bytes are in the blob store.
    pub key: String,
    pub size: u64,
    /// BLAKE3 of its bytes (hex): the client checks what it downloads.
    pub hash: String,
    pub created: i64,
}

/// What a transcode makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DerivedKind {
    /// One JPEG frame from a tenth of the way in.
    Poster,
    /// One JPEG of ten frames side by side, spread over the clip.
    Strip,
    /// H.264/AAC MP4 at most 540 lines high, for editing on a laptop.
    Proxy,
}

impl DerivedKind {
    pub const ALL: [DerivedKind; 3] = [DerivedKind::Poster, DerivedKind::Strip, DerivedKind::Proxy];

    pub fn as_str(self) -> &'static str {
        match self {
            DerivedKind::Poster => "poster",
            DerivedKind::Strip => "strip",
            DerivedKind::Proxy => "proxy",
        }
    }

    pub fn parse(s: &str) -> Option<DerivedKind> {
        DerivedKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The file name extension of its bytes.
    pub fn extension(self) -> &'static str {
        match self {
            DerivedKind::Poster | DerivedKind::Strip => "jpg",
            DerivedKind::Proxy => "mp4",
        }
    }
}

#[async_trait::async_trait]
pub trait DerivedStore: Send + Sync {
    /// Records (or replaces) one derived object of `recipe`.
    async fn put_derived(&self, derived: &Derived) -> anyhow::Result<()>;
    /// `recipe`'s derived object of `kind`, if one was made.
    async fn derived(&self, recipe: &ChunkId, kind: &str) -> anyhow::Result<Option<Derived>>;
    /// Every derived object of `recipe`.
    async fn derived_all(&self, recipe: &ChunkId) -> anyhow::Result<Vec<Derived>>;
    /// Forgets the derived objects of recipes the object index no longer holds (gc
    /// collected them): their blobs become dead at `now` (deleted after the grace, as
    /// emptied packs are) and their transcode jobs go, so a later push of the same asset
    /// queues a new one. How many were forgotten.
    async fn drop_orphans(&self, now: i64) -> anyhow::Result<u64>;
}
