//! The scrub: re-read a stored pack, re-hash every object the index places in it, and
//! take the ones that no longer match their ids out of the index (and out of every
//! repository, so the next push holding one stores it again). Found objects are kept in
//! `corrupt_objects` for `dits-hub fsck` and `/metrics`.

use std::io::ErrorKind;

use dits_core::ChunkId;

use crate::meta::unix_now;
use crate::server::state::HubState;

/// At most this many bytes are read from the pack at a time.
const READ_MAX: u64 = 32 << 20;

/// What one pack's scrub found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScrubReport {
    pub objects: u64,
    pub bytes: u64,
    /// Objects found bad and taken out of the index.
    pub quarantined: u64,
}

/// Scrubs the pack stored under `key`. A pack that is gone (every object in it is then
/// unreadable) is a finding, not a failure; a read that fails otherwise is retried.
pub async fn scrub_pack(state: &HubState, key: &str) -> anyhow::Result<ScrubReport> {
    let objects = state.meta.gc().pack_objects(key).await?;
    let mut report = ScrubReport::default();
    let mut bad: Vec<(ChunkId, String)> = Vec::new();
    let mut i = 0;
    while i < objects.len() {
        // One read for neighbours that sit back to back.
        let start = objects[i].1.offset;
        let mut end = i;
        let mut stop = start + u64::from(objects[i].1.stored_len);
        while end + 1 < objects.len()
            && objects[end + 1].1.offset == stop
            && stop + u64::from(objects[end + 1].1.stored_len) - start <= READ_MAX
        {
            end += 1;
            stop += u64::from(objects[end].1.stored_len);
        }
        let range = &objects[i..=end];
        match state
            .blobs
            .read_range(key, start, (stop - start) as usize)
            .await
        {
            Ok(bytes) => {
                for (id, location) in range {
                    let at = (location.offset - start) as usize;
                    let sealed = bytes.get(at..at + location.stored_len as usize);
                    report.objects += 1;
                    report.bytes += u64::from(location.stored_len);
                    if let Err(why) = check(id, sealed, location.len) {
                        bad.push((*id, why));
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::UnexpectedEof => {
                for (id, _) in range {
                    report.objects += 1;
                    bad.push((*id, format!("pack {key} unreadable: {e}")));
                }
            }
            Err(e) => anyhow::bail!("reading pack {key}: {e}"),
        }
        i = end + 1;
    }
    if !bad.is_empty() {
        for (id, why) in &bad {
            tracing::error!(pack = key, object = %id.to_hex(), "scrub: {why}");
        }
        report.quarantined = state.meta.jobs().quarantine(key, &bad, unix_now()).await?;
    }
    Ok(report)
}

/// Whether `sealed` (the stored bytes, `None` when the pack is too short) is object `id`.
fn check(id: &ChunkId, sealed: Option<&[u8]>, len: u32) -> Result<(), String> {
    let Some(sealed) = sealed else {
        return Err("the pack ends before the object".into());
    };
    if len == 0 {
        // A sealed object of an encrypted repository: the hub can check only its shape
        // (its owners check its contents when they open it).
        return if dits_core::crypt::looks_sealed(sealed) {
            Ok(())
        } else {
            Err("not a sealed object any more".into())
        };
    }
    dits_core::envelope::verify(id, sealed, u64::from(len)).map_err(|e| e.to_string())
}
