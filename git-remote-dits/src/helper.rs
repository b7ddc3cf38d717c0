//! `git-remote-dits REMOTE URL`: Git's remote-helper protocol (gitremote-helpers(7)) with
//! the `fetch`, `push` and `option` capabilities. This is the I/O shell: reading and
//! answering Git lives in [`crate::protocol`], deciding what a push moves in
//! [`crate::plan`]; here are stdin/stdout, the hub and the git subprocesses. Push sends
//! the media the pushed commits need first (only objects the hub lacks), then one Git
//! pack, then asks the hub to move the refs by compare-and-swap; the hub moves a ref
//! only once everything it needs is durable. Fetch brings the Git packs it lacks; media
//! follows on checkout (smudge) or, with `dits.fetch = eager`, right away.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context, Result};
use dits_core::{ChunkId, LocalStore};
use dits_wire::wire::{RefUpdate, ZERO_OID};
use dits_wire::RemoteUrl;

use crate::git;
use crate::media::{objects_for, pointers_in};
use crate::plan::{landed, plan_push, LocalRepository};
use crate::protocol::{
    write_fetch_done, write_list, write_push_statuses, Conversation, HelperOptions, PushSpec,
    RefStatus, Request,
};
use crate::session::{connect, Session};
use crate::transfer::{fetch_media, upload};

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

/// Serves Git's requests on stdin/stdout; the hub is connected on the first request
/// that needs it (so `capabilities` and `option` work offline).
async fn run(remote: &str, url: &str) -> Result<()> {
    let url = RemoteUrl::parse(url).map_err(|e| anyhow::anyhow!(e))?;
    let mut conversation = Conversation::default();
    let mut session: Option<Session> = None;
    let mut input = std::io::stdin().lock();
    let mut out = std::io::stdout();
    while let Some(request) = conversation.next_request(&mut input, &mut out)? {
        let options = conversation.options();
        let s = ensure(&mut session, &url).await?;
        match request {
            Request::List { .. } => {
                let refs = s.hub.refs().await.map_err(|e| s.explain(e))?;
                s.authenticated();
                write_list(&mut out, &refs)?;
            }
            Request::Fetch(wanted) => {
                tracing::debug!(refs = wanted.len(), "fetch requested");
                fetch(s, remote, options).await?;
                write_fetch_done(&mut out)?;
            }
            Request::Push(specs) => {
                let statuses = push(s, &specs, options).await?;
                write_push_statuses(&mut out, &statuses)?;
            }
        }
    }
    if let Some(s) = session {
        s.close().await;
    }
    Ok(())
}

async fn ensure<'a>(session: &'a mut Option<Session>, url: &RemoteUrl) -> Result<&'a Session> {
    if session.is_none() {
        *session = Some(connect(url).await?);
    }
    Ok(session.as_ref().expect("just connected"))
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

async fn fetch(session: &Session, remote: &str, options: &HelperOptions) -> Result<()> {
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
        let (pointers, _) = pointers_in(&tips, &session.hub.keyring())?;
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

/// The repository Git runs us in, asked through git subprocesses.
struct GitRepository;

impl LocalRepository for GitRepository {
    type Error = anyhow::Error;

    fn resolve(&mut self, rev: &str) -> Result<String> {
        Ok(git::run(&["rev-parse", "--verify", rev])?
            .trim()
            .to_string())
    }

    fn has_object(&mut self, oid: &str) -> bool {
        git::try_run(&["cat-file", "-e", "--end-of-options", oid]).is_some()
    }

    fn is_ancestor(&mut self, old: &str, new: &str) -> bool {
        Command::new("git")
            .args(["merge-base", "--is-ancestor", "--end-of-options", old, new])
            .status()
            .is_ok_and(|s| s.success())
    }
}

/// Plans the push (see [`crate::plan`]), sends what the hub lacks (media first, then
/// one Git pack), asks the hub to move the refs, and returns Git's status lines.
async fn push(
    session: &Session,
    specs: &[PushSpec],
    options: &HelperOptions,
) -> Result<Vec<RefStatus>> {
    let remote_refs = session.hub.refs().await.map_err(|e| session.explain(e))?;
    session.authenticated();
    let mut repo = GitRepository;
    let plan = plan_push(specs, &remote_refs, &mut repo, options.atomic)?;
    if plan.updates.is_empty() {
        return Ok(plan.settled);
    }
    let tips = plan.tips();
    let (packs, recipes) = if tips.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        send_objects(session, &tips, &remote_refs, &mut repo, options).await?
    };
    tracing::debug!("push: git objects sent");
    let results = session
        .hub
        .update_refs(plan.updates.clone(), packs, recipes, options.atomic)
        .await
        .map_err(|e| session.explain(e))?;
    if git::config_bool("dits.unlockAfterPush", false) {
        release_locks(session, landed(&plan.updates, &results)).await?;
    }
    tracing::debug!("push: refs updated");
    Ok(plan.statuses(results))
}

/// Uploads the media the commits up to `tips` need and the hub lacks, then one Git pack
/// of what the hub's refs don't already reach. Returns the pack ids and the recipes the
/// ref update must find on the hub.
async fn send_objects(
    session: &Session,
    tips: &[String],
    remote_refs: &BTreeMap<String, String>,
    repo: &mut GitRepository,
    options: &HelperOptions,
) -> Result<(Vec<String>, Vec<ChunkId>)> {
    let mut rev_args = tips.to_vec();
    let known: Vec<String> = remote_refs
        .values()
        .filter(|o| repo.has_object(o))
        .cloned()
        .collect();
    if !known.is_empty() {
        rev_args.push("--not".into());
        rev_args.extend(known.iter().cloned());
    }
    let keyring = session.hub.keyring();
    let (pointers, plain) = pointers_in(&rev_args, &keyring)?;
    tracing::debug!(pointers = pointers.len(), "push: pointers found");
    if keyring.is_encrypted() && plain > 0 {
        // Committed before this clone learned the repository is encrypted: their pointers
        // name the files' BLAKE3 and recipe ids, which the hub must not see.
        bail!(
            "cannot push: {plain} files in the commits being pushed have unencrypted pointers, but {} is encrypted; re-add them sealed (`git add --renormalize .`), fold that into the unpushed commits that hold them (`git commit --amend`, or `git rebase -i`), then push again",
            session.url
        );
    }
    let recipes = pointers.iter().map(|p| p.recipe).collect();
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
    let mut missing = session
        .hub
        .missing(&ids)
        .await
        .map_err(|e| session.explain(e))?;
    // What the hub lost and this store still holds goes too, whichever commit it is in.
    for id in session.hub.wanted().await.map_err(|e| session.explain(e))? {
        if !missing.contains(&id) && store.stored_len(&id)?.is_some() {
            missing.push(id);
        }
    }
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
    let pack = pack_objects(tips, &known)?;
    let mut packs = Vec::new();
    // A pack's object count is bytes 8..12; an empty pack needs no upload.
    if pack.get(8..12).is_some_and(|count| count != [0, 0, 0, 0]) {
        packs.push(
            session
                .hub
                .put_git_pack(&pack)
                .await
                .map_err(|e| session.explain(e))?,
        );
    }
    Ok((packs, recipes))
}

/// `dits.unlockAfterPush`: releases the pusher's locks on the paths the landed updates
/// changed. A failure here is a warning: the push itself went through.
async fn release_locks(session: &Session, landed: Vec<&RefUpdate>) -> Result<()> {
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
    Ok(())
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
