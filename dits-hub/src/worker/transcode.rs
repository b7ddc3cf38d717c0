//! The transcode: rebuild one stored asset from its recipe, and make with `ffmpeg` a
//! poster frame, a thumbnail strip and a small H.264 proxy, stored as derived objects
//! of the recipe ([`crate::meta::derived`]). The recipe fixes the bytes (every object it
//! lists is verified as it is read), so equal assets, at any path in any repository,
//! share one transcode: the job's subject is the recipe id and a done job is not run
//! again.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use dits_core::recipe::Recipe;
use dits_core::ChunkId;
use tokio::io::AsyncReadExt;

use crate::meta::derived::{Derived, DerivedKind};
use crate::meta::jobs::Hopeless;
use crate::meta::unix_now;
use crate::server::objects::read_plain;
use crate::server::rebuild::write_range;
use crate::server::state::HubState;

/// Lines of the proxy's picture, at most (smaller sources keep theirs).
pub const PROXY_HEIGHT: u32 = 540;
/// Frames in the thumbnail strip.
const STRIP_FRAMES: u32 = 10;
/// Height of each strip frame and of the poster.
const THUMB_HEIGHT: u32 = 180;
/// The longest any one `ffmpeg` may run before it is stopped (the job then fails and is
/// retried): a hostile file must not hold a worker for ever.
const FFMPEG_LIMIT: Duration = Duration::from_secs(30 * 60);

/// Makes whatever derived objects of the recipe `subject` are not made yet.
pub async fn transcode(state: &Arc<HubState>, subject: &str) -> anyhow::Result<()> {
    let recipe: ChunkId = subject
        .parse()
        .with_context(|| format!("transcode subject {subject:?}"))?;
    let made = state.meta.derived().derived_all(&recipe).await?;
    let todo: Vec<DerivedKind> = DerivedKind::ALL
        .into_iter()
        .filter(|k| !made.iter().any(|d| d.kind == k.as_str()))
        .collect();
    if todo.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(&state.work)
        .with_context(|| format!("creating {}", state.work.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix("transcode-")
        .tempdir_in(&state.work)
        .with_context(|| format!("a scratch directory in {}", state.work.display()))?;
    let source = scratch.path().join("source");
    {
        let (state, source) = (state.clone(), source.clone());
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || rebuild(&state, &handle, &recipe, &source))
            .await
            .context("rebuilding the asset")??;
    }
    let seconds = duration(&source).await?;
    for kind in todo {
        let out = scratch
            .path()
            .join(format!("{}.{}", kind.as_str(), kind.extension()));
        ffmpeg(&make_args(kind, &source, &out, seconds))
            .await
            .with_context(|| format!("making the {} of asset {}", kind.as_str(), recipe.short()))?;
        store(state, &recipe, kind, &out).await?;
    }
    Ok(())
}

/// Writes the file recipe `id` describes to `out`, every object verified as it is read.
fn rebuild(
    state: &HubState,
    handle: &tokio::runtime::Handle,
    id: &ChunkId,
    out: &Path,
) -> anyhow::Result<()> {
    use std::io::Write;
    let bytes = handle
        .block_on(read_plain(state, id))
        .with_context(|| format!("reading recipe {}", id.short()))?;
    let recipe =
        Recipe::decode(&bytes).map_err(|e| Hopeless(format!("recipe {}: {e}", id.short())))?;
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut file = std::io::BufWriter::with_capacity(1 << 20, file);
    write_range(state, handle, id, &recipe, 0, recipe.file_size, &mut file)?;
    file.flush()
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// The asset's duration in seconds, from `ffprobe`; an asset with no video stream is an
/// error (there is nothing to transcode).
async fn duration(source: &Path) -> anyhow::Result<f64> {
    let out = tokio::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=codec_type:format=duration"])
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(source)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .context("ffprobe took longer than 2 minutes")?
        .context("running ffprobe (is FFmpeg installed on the worker's host?)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.contains("codec_type=video") {
        // The bytes are fixed by the recipe: another attempt would find the same.
        return Err(Hopeless(format!(
            "ffprobe finds no video stream: {}",
            dits_core::project::cut_chars(String::from_utf8_lossy(&out.stderr).trim(), 400)
        ))
        .into());
    }
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("duration="))
        .and_then(|d| d.trim().parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d > 0.0)
        .unwrap_or(1.0))
}

/// `ffmpeg`'s arguments for making `kind` of `source` (lasting `seconds`) at `out`.
fn make_args(kind: DerivedKind, source: &Path, out: &Path, seconds: f64) -> Vec<String> {
    let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut args = owned(&["-nostdin", "-y", "-v", "error"]);
    if kind == DerivedKind::Poster {
        // A tenth of the way in: past fades from black, still early.
        args.extend(["-ss".into(), format!("{:.3}", seconds / 10.0)]);
    }
    args.extend(["-i".into(), source.display().to_string()]);
    let thumb = format!("scale=-2:'min({THUMB_HEIGHT},ih)'");
    let (options, filter) = match kind {
        DerivedKind::Poster => (owned(&["-map", "0:v:0", "-frames:v", "1"]), thumb),
        DerivedKind::Strip => {
            let rate = f64::from(STRIP_FRAMES) / seconds.max(0.1);
            (
                owned(&["-map", "0:v:0", "-frames:v", "1"]),
                format!("fps={rate:.6},{thumb},tile={STRIP_FRAMES}x1"),
            )
        }
        DerivedKind::Proxy => (
            owned(&[
                "-map",
                "0:v:0",
                "-map",
                "0:a:0?",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-crf",
                "28",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-b:a",
                "96k",
                "-movflags",
                "+faststart",
            ]),
            // Even dimensions (4:2:0), never taller than the source.
            format!("scale=-2:'trunc(min({PROXY_HEIGHT},ih)/2)*2'"),
        ),
    };
    args.extend(options);
    args.extend(["-vf".into(), filter, out.display().to_string()]);
    args
}

async fn ffmpeg(args: &[String]) -> anyhow::Result<()> {
    let run = tokio::process::Command::new("ffmpeg")
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(FFMPEG_LIMIT, run)
        .await
        .context("ffmpeg ran longer than 30 minutes and was stopped")?
        .context("running ffmpeg (is FFmpeg installed on the worker's host?)")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "ffmpeg failed: {}",
            dits_core::project::cut_chars(err.trim(), 400)
        );
    }
    Ok(())
}

/// Stores the file at `made` as `recipe`'s derived object of `kind`.
async fn store(
    state: &HubState,
    recipe: &ChunkId,
    kind: DerivedKind,
    made: &Path,
) -> anyhow::Result<()> {
    let mut file = tokio::fs::File::open(made)
        .await
        .with_context(|| format!("ffmpeg made no {}", made.display()))?;
    let mut writer = state.blobs.writer()?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        writer.write(&buf[..n])?;
        hasher.update(&buf[..n]);
    }
    anyhow::ensure!(!writer.is_empty(), "ffmpeg made an empty {}", kind.as_str());
    let size = writer.len();
    let hash = hasher.finalize().to_hex().to_string();
    // Named by content: a retry after a crash writes the same key.
    let key = format!("derived/{}/{}.{}", recipe.to_hex(), hash, kind.extension());
    state.blobs.commit(writer, &key).await?;
    state
        .meta
        .derived()
        .put_derived(&Derived {
            recipe: *recipe,
            kind: kind.as_str().to_string(),
            key,
            size,
            hash,
            created: unix_now(),
        })
        .await?;
    state
        .stats
        .derived_bytes
        .fetch_add(size, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}
