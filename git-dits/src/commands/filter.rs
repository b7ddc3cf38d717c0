//! `git dits filter-process` (the long-running protocol) and the single-shot `clean` /
//! `smudge` fallbacks Git uses when the process filter is unavailable. stdout belongs to
//! Git here: every diagnostic goes to stderr.

use std::io::{self, BufReader, BufWriter, Write};

use anyhow::{Context, Result};
use dits_core::media::LayoutOptions;
use dits_core::LocalStore;
use dits_filter::{DitsFilter, Filter};

use git_remote_dits::git;

/// `read_work_tree`: Git runs filters with the top of the work tree as the current
/// directory and names paths relative to it (also for `git add` in a subdirectory and
/// `git hash-object --path`), so clean may read the file a stream came from there. Only
/// a speed-up: clean compares every byte with Git's stream before trusting the file.
pub(crate) fn open_filter(read_work_tree: bool) -> Result<DitsFilter> {
    let dir = git::store_dir()?;
    let store = LocalStore::open(&dir)
        .with_context(|| format!("opening the Dits store at {}", dir.display()))?;
    let layout = LayoutOptions {
        split_tracks: git::config_bool("dits.splitTracks", true),
    };
    let skip = std::env::var("GIT_DITS_SKIP_SMUDGE").is_ok_and(|v| v == "1");
    let mut filter = DitsFilter::new(store, layout)
        .with_source(Box::new(git_remote_dits::source::HubSource::default()))
        .skipping_smudge(skip)
        .with_keyring(git_remote_dits::keys::load_keyring()?);
    if read_work_tree {
        if let Ok(top) = std::env::current_dir() {
            filter = filter.reading_work_tree(top);
        }
    }
    Ok(filter)
}

pub fn filter_process() -> Result<()> {
    let mut filter = open_filter(true)?;
    super::install::ensure_hooks();
    let stdin = io::stdin();
    let stdout = io::stdout();
    let mut input = BufReader::with_capacity(1 << 20, stdin.lock());
    let mut output = BufWriter::with_capacity(1 << 16, stdout.lock());
    dits_filter::serve(&mut input, &mut output, &mut filter).context("git-dits filter-process")?;
    output.flush()?;
    Ok(())
}

pub fn clean(path: Option<&str>) -> Result<()> {
    // Without `%f` there is no file to read: the content is spooled.
    let mut filter = open_filter(path.is_some())?;
    let name = path.unwrap_or("<stdin>");
    let pointer = filter.clean(name, &mut io::stdin().lock())?;
    io::stdout().lock().write_all(&pointer)?;
    Ok(())
}

pub fn smudge(path: Option<&str>) -> Result<()> {
    let mut filter = open_filter(false)?;
    super::install::ensure_hooks();
    let name = path.unwrap_or("<stdin>");
    let mut out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
    filter.smudge(name, &mut io::stdin().lock(), &mut out)?;
    out.flush()?;
    Ok(())
}
