//! `git dits filter-process` (the long-running protocol) and the single-shot `clean` /
//! `smudge` fallbacks Git uses when the process filter is unavailable. stdout belongs to
//! Git here: every diagnostic goes to stderr.

use std::io::{self, BufReader, BufWriter, Write};

use anyhow::{Context, Result};
use dits_core::media::LayoutOptions;
use dits_core::LocalStore;
use dits_filter::{DitsFilter, Filter};

use crate::git;

fn open_filter() -> Result<DitsFilter> {
    let dir = git::store_dir()?;
    let store = LocalStore::open(&dir)
        .with_context(|| format!("opening the Dits store at {}", dir.display()))?;
    let layout = LayoutOptions {
        split_tracks: git::config_bool("dits.splitTracks", true),
    };
    let skip = std::env::var("GIT_DITS_SKIP_SMUDGE").is_ok_and(|v| v == "1");
    Ok(DitsFilter::new(store, layout)
        .with_source(Box::new(HubSource::default()))
        .skipping_smudge(skip))
}

/// Fetches missing media from the repository's dits:// remote, connecting on first need.
#[derive(Default)]
struct HubSource {
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

pub fn filter_process() -> Result<()> {
    let mut filter = open_filter()?;
    let stdin = io::stdin();
    let stdout = io::stdout();
    let mut input = BufReader::with_capacity(1 << 20, stdin.lock());
    let mut output = BufWriter::with_capacity(1 << 16, stdout.lock());
    dits_filter::serve(&mut input, &mut output, &mut filter).context("git-dits filter-process")?;
    output.flush()?;
    Ok(())
}

pub fn clean(path: Option<&str>) -> Result<()> {
    let mut filter = open_filter()?;
    let name = path.unwrap_or("<stdin>");
    let pointer = filter.clean(name, &mut io::stdin().lock())?;
    io::stdout().lock().write_all(&pointer)?;
    Ok(())
}

pub fn smudge(path: Option<&str>) -> Result<()> {
    let mut filter = open_filter()?;
    let name = path.unwrap_or("<stdin>");
    let mut out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
    filter.smudge(name, &mut io::stdin().lock(), &mut out)?;
    out.flush()?;
    Ok(())
}
