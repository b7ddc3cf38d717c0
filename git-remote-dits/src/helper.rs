//! `git-remote-dits REMOTE URL`: Git's remote-helper protocol (gitremote-helpers(7)) with
//! the `fetch`, `push` and `option` capabilities. Push sends the media the pushed commits
//! need first (only objects the hub lacks), then one Git pack, then asks the hub to move
//! the refs by compare-and-swap; the hub moves a ref only once everything it needs is
//! durable. Fetch brings the Git packs it lacks; media follows on checkout (smudge) or,
//! with `dits.fetch = eager`, right away.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context, Result};
use dits_core::LocalStore;
use dits_wire::wire::{RefUpdate, ZERO_OID};
use dits_wire::RemoteUrl;

use crate::git;
use crate::media::{objects_for, pointers_in};
use crate::session::{connect, Session};
use crate::transfer::{fetch_media, upload};

struct Options {
    progress: bool,
    verbosity: u32,
    atomic: bool,
}

pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (remote, url) = match args.as_slice() {
        [_, remote, url, ..] => (remote.clone(), url.clone()),
        [_, url] => (url.clone(), url.clone()),
        _ => {
            eprintln!("usage: git-remote-dits REMOTE URL (Git runs this for dits:// remotes)");
            return ExitCode::from(2);
        }
    };
    crate::logging::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fatal: git-remote-dits: {e}");
            return ExitCode::from(128);
        }
    };
    match runtime.block_on(run(&remote, &url)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fatal: {e:#}");
            ExitCode::from(128)
        }
    }
}

async fn run(remote: &str, url: &str) -> Result<()> {
    let url = RemoteUrl::parse(url).map_err(|e| anyhow::anyhow!(e))?;
    let mut options = Options {
        progress: false,
        verbosity: 1,
        atomic: false,
    };
    let mut session: Option<Session> = None;
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut out = std::io::stdout();
    while let Some(line) = lines.next() {
        let line = line?;
        let mut words = line.splitn(3, ' ');
        match words.next().unwrap_or("") {
            "" => break,
            "capabilities" => writeln!(out, "option\nfetch\npush\n")?,
            "option" => {
                let (name, value) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                let answer = match name {
                    "progress" => {
                        options.progress = value == "true";
                        "ok"
                    }
                    "verbosity" => {
                        options.verbosity = value.parse().unwrap_or(1);
                        "ok"
                    }
                    "atomic" => {
                        options.atomic = value == "true";
                        "ok"
                    }
                    _ => "unsupported",
                };
                writeln!(out, "{answer}")?;
            }
            "list" => {
                let s = ensure(&mut session, &url).await?;
                let refs = s.hub.refs().await.map_err(|e| s.explain(e))?;
                s.authenticated();
                for (name, oid) in &refs {
                    writeln!(out, "{oid} {name}")?;
                }
                if let Some(head) = default_branch(&refs) {
                    writeln!(out, "@{head} HEAD")?;
                }
                writeln!(out)?;
            }
            "fetch" => {
                // A batch of fetch lines ends with a blank line.
                for more in lines.by_ref() {
                    if more?.is_empty() {
                        break;
                    }
                }
                let s = ensure(&mut session, &url).await?;
                fetch(s, remote, &options).await?;
                writeln!(out)?;
            }
            "push" => {
                let mut specs = vec![words.next().unwrap_or("").to_string()];
                for more in lines.by_ref() {
                    let more = more?;
                    match more.strip_prefix("push ") {
                        Some(spec) => specs.push(spec.to_string()),
                        None => break,
                    }
                }
                let s = ensure(&mut session, &url).await?;
                for status in push(s, &specs, &options).await? {
                    writeln!(out, "{status}")?;
                }
                writeln!(out)?;
            }
            other => bail!("git-remote-dits: unknown command {other:?} from git"),
        }
        out.flush()?;
    }
    if let Some(s) = session {
        s.hub.close().await;
    }
    Ok(())
}

async fn ensure<'a>(session: &'a mut Option<Session>, url: &RemoteUrl) -> Result<&'a Session> {
    if session.is_none() {
        *session = Some(connect(url).await?);
    }
    Ok(session.as_ref().expect("just connected"))
}

fn default_branch(refs: &BTreeMap<String, String>) -> Option<String> {
    ["refs/heads/main", "refs/heads/master"]
        .iter()
        .find(|r| refs.contains_key(**r))
        .map(|r| r.to_string())
        .or_else(|| refs.keys().find(|r| r.starts_with("refs/heads/")).cloned())
}

fn packs_file(remote: &str) -> Result<std::path::PathBuf> {
    let safe: String = remote
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(git::store_dir()?
        .join("remotes")
        .join(safe)
        .join("git-packs"))
}

async fn fetch(session: &Session, remote: &str, options: &Options) -> Result<()> {
    let file = packs_file(remote)?;
    let have: Vec<String> = std::fs::read_to_string(&file)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let packs = session
        .hub
        .git_packs(&have)
        .await
        .map_err(|e| session.explain(e))?;
    std::fs::create_dir_all(file.parent().expect("has a parent"))?;
    for id in &packs {
        let bytes = session
            .hub
            .get_git_pack(id)
            .await
            .map_err(|e| session.explain(e))?;
        index_pack(&bytes)
            .with_context(|| format!("storing Git pack {id} from {}", session.url))?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)?;
        writeln!(f, "{id}")?;
    }
    if git::try_run(&["config", "--get", "dits.fetch"]).is_some_and(|v| v.trim() == "eager") {
        let refs = session.hub.refs().await.map_err(|e| session.explain(e))?;
        let tips: Vec<String> = refs.values().cloned().collect();
        let pointers = pointers_in(&tips)?;
        let mut store = LocalStore::open(&git::store_dir()?)?;
        fetch_media(session, &mut store, &pointers, options.progress).await?;
    }
    Ok(())
}

fn index_pack(bytes: &[u8]) -> Result<()> {
    let mut child = Command::new("git")
        .args(["index-pack", "--stdin", "--fix-thin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().context("stdin")?.write_all(bytes)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "git index-pack: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn object_exists(oid: &str) -> bool {
    git::try_run(&["cat-file", "-e", oid]).is_some()
}

fn is_ancestor(old: &str, new: &str) -> bool {
    Command::new("git")
        .args(["merge-base", "--is-ancestor", old, new])
        .status()
        .is_ok_and(|s| s.success())
}

async fn push(session: &Session, specs: &[String], options: &Options) -> Result<Vec<String>> {
    let remote_refs = session.hub.refs().await.map_err(|e| session.explain(e))?;
    session.authenticated();
    let mut statuses: Vec<(String, Option<String>)> = Vec::new();
    let mut updates = Vec::new();
    let mut tips = Vec::new();
    for spec in specs {
        let (force, spec) = match spec.strip_prefix('+') {
            Some(s) => (true, s),
            None => (false, spec.as_str()),
        };
        let (src, dst) = spec.split_once(':').context("push refspec without ':'")?;
        let new = if src.is_empty() {
            ZERO_OID.to_string()
        } else {
            git::run(&["rev-parse", "--verify", src])?
                .trim()
                .to_string()
        };
        let old = remote_refs
            .get(dst)
            .cloned()
            .unwrap_or_else(|| ZERO_OID.to_string());
        if old == new {
            statuses.push((dst.to_string(), None));
            continue;
        }
        if !force && old != ZERO_OID && new != ZERO_OID {
            if !object_exists(&old) {
                statuses.push((dst.to_string(), Some("fetch first".into())));
                continue;
            }
            if !is_ancestor(&old, &new) {
                statuses.push((dst.to_string(), Some("non-fast-forward".into())));
                continue;
            }
        }
        if new != ZERO_OID {
            tips.push(new.clone());
        }
        updates.push(RefUpdate {
            name: dst.to_string(),
            old,
            new,
        });
    }
    if options.atomic && statuses.iter().any(|(_, e)| e.is_some()) {
        return Ok(statuses
            .into_iter()
            .map(|(d, e)| {
                format!(
                    "error {d} {}",
                    e.unwrap_or_else(|| "atomic push failed".into())
                )
            })
            .chain(
                updates
                    .iter()
                    .map(|u| format!("error {} atomic push failed", u.name)),
            )
            .collect());
    }
    let mut recipes = Vec::new();
    let mut packs = Vec::new();
    if !tips.is_empty() {
        let mut rev_args = tips.clone();
        let known: Vec<String> = remote_refs
            .values()
            .filter(|o| object_exists(o))
            .cloned()
            .collect();
        if !known.is_empty() {
            rev_args.push("--not".into());
            rev_args.extend(known.iter().cloned());
        }
        let pointers = pointers_in(&rev_args)?;
        tracing::debug!(pointers = pointers.len(), "push: pointers found");
        recipes = pointers.iter().map(|p| p.recipe).collect();
        let mut store = LocalStore::open(&git::store_dir()?)?;
        let (ids, absent) = objects_for(&mut store, &pointers)?;
        if !absent.is_empty() {
            let not_on_hub = session
                .hub
                .missing(&absent)
                .await
                .map_err(|e| session.explain(e))?;
            if let Some(r) = not_on_hub.first() {
                bail!("cannot push: the media behind recipe {} is neither in the local store nor on {}; run `git dits pull-media` from where it was added", r.short(), session.url);
            }
        }
        let missing = session
            .hub
            .missing(&ids)
            .await
            .map_err(|e| session.explain(e))?;
        tracing::debug!(
            objects = ids.len(),
            missing = missing.len(),
            "push: hub asked"
        );
        let sent = upload(session, &mut store, &missing, options.progress).await?;
        if options.verbosity > 0 {
            eprintln!(
                "dits: sent {} of {} media objects ({} bytes) to {}",
                missing.len(),
                ids.len(),
                sent,
                session.url
            );
        }
        tracing::debug!(bytes = sent, "push: media uploaded");
        let pack = pack_objects(&tips, &known)?;
        // A pack's object count is bytes 8..12; an empty pack needs no upload.
        if pack.len() >= 12 && pack[8..12] != [0, 0, 0, 0] {
            packs.push(
                session
                    .hub
                    .put_git_pack(&pack)
                    .await
                    .map_err(|e| session.explain(e))?,
            );
        }
    }
    tracing::debug!("push: git objects sent");
    let pushed = updates.clone();
    let results = if updates.is_empty() {
        Vec::new()
    } else {
        session
            .hub
            .update_refs(updates, packs, recipes, options.atomic)
            .await
            .map_err(|e| session.explain(e))?
    };
    if git::config_bool("dits.unlockAfterPush", false) {
        let landed: Vec<&RefUpdate> = pushed
            .iter()
            .filter(|u| u.new != ZERO_OID && results.iter().any(|r| r.ok && r.name == u.name))
            .collect();
        let mut paths = Vec::new();
        for u in landed {
            paths.extend(changed_paths(&u.new, &u.old)?);
        }
        paths.sort();
        paths.dedup();
        match crate::locks::release_after_push(session, paths).await {
            Ok(released) => {
                for p in released {
                    eprintln!("dits: released your lock on {p} (dits.unlockAfterPush)");
                }
            }
            Err(e) => eprintln!("warning: dits: pushed, but releasing locks failed: {e:#}"),
        }
    }
    tracing::debug!("push: refs updated");
    for r in results {
        statuses.push((
            r.name,
            if r.ok {
                None
            } else {
                Some(r.error.unwrap_or_else(|| "refused".into()))
            },
        ));
    }
    Ok(statuses
        .into_iter()
        .map(|(dst, err)| match err {
            None => format!("ok {dst}"),
            Some(e) => format!("error {dst} {e}"),
        })
        .collect())
}

/// Paths the commits from `old` (if this repository has it) to `new` change on `new`'s
/// first-parent line: what the hub checks locks against.
fn changed_paths(new: &str, old: &str) -> Result<Vec<String>> {
    let exclude: Vec<String> = if old == ZERO_OID {
        Vec::new()
    } else {
        vec![old.to_string()]
    };
    let out = git::run(&dits_wire::changes::log_args(new, &exclude))?;
    Ok(dits_wire::changes::parse(out.as_bytes()))
}

fn pack_objects(tips: &[String], known: &[String]) -> Result<Vec<u8>> {
    let mut child = Command::new("git")
        .args(["pack-objects", "--stdout", "--revs", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting git pack-objects")?;
    let mut input = String::new();
    for t in tips {
        input.push_str(&format!("{t}\n"));
    }
    for k in known {
        input.push_str(&format!("^{k}\n"));
    }
    let mut stdin = child.stdin.take().context("stdin")?;
    let feeder = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output()?;
    feeder
        .join()
        .map_err(|_| anyhow::anyhow!("feeder panicked"))??;
    if !out.status.success() {
        bail!("git pack-objects failed");
    }
    Ok(out.stdout)
}
