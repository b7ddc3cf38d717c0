//! `git dits hook pre-push REMOTE URL`: a repository whose Git remote is any Git host
//! (https://, ssh://, file://) keeps its media on a Dits hub named by `dits.hub` or a
//! committed `.ditsconfig`. Before Git's push goes ahead, each pushed ref is pushed to
//! the hub as well (`git push --no-verify HUB SRC:DST`, through `git-remote-dits`): the
//! hub receives the media objects it lacks, with progress, then the Git objects, and
//! moves the same ref, refusing it when someone else holds a lock on a path the commits
//! change. Any failure refuses the whole push, so the Git host never holds commits whose
//! media is not stored. A `dits://` remote needs none of this: the remote helper does it.
//!
//! The hub keeps a copy of the Git history, which keeps the media reachable (garbage
//! collection spares it), lets the hub enforce locks and index commits for its pages.
//! When the hub's ref has moved elsewhere (a force push to the host, or another clone's
//! push that the host then refused), the commits go to `refs/dits/kept/SHA` instead of
//! overwriting it: nothing the hub holds is dropped by a push the host may refuse.

use std::io::Read;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use git_remote_dits::session::hub_url;

/// One line of pre-push's input: `LOCAL_REF LOCAL_SHA REMOTE_REF REMOTE_SHA`.
#[derive(Debug, PartialEq, Eq)]
struct Update {
    local_ref: String,
    local_sha: String,
    remote_ref: String,
}

/// The updates that send commits (deletions send none).
fn updates(input: &str) -> Vec<Update> {
    input
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (local_ref, local_sha, remote_ref) = (f.next()?, f.next()?, f.next()?);
            (local_sha.bytes().any(|b| b != b'0')).then(|| Update {
                local_ref: local_ref.to_string(),
                local_sha: local_sha.to_string(),
                remote_ref: remote_ref.to_string(),
            })
        })
        .collect()
}

pub fn pre_push(args: &[String]) -> Result<i32> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("reading the refs being pushed")?;
    let (remote, url) = (
        args.first().map(String::as_str).unwrap_or_default(),
        args.get(1).map(String::as_str).unwrap_or_default(),
    );
    if url.starts_with("dits://") {
        return Ok(0);
    }
    let updates = updates(&input);
    if updates.is_empty() {
        return Ok(0);
    }
    let Some(hub) = hub_url()? else {
        return no_hub(remote, &updates);
    };
    let hub_url = hub.to_string();
    for u in &updates {
        // The ref name keeps the push's own wording; a bare commit id is pushed as is.
        let src = if u.local_ref.starts_with("refs/") {
            &u.local_ref
        } else {
            &u.local_sha
        };
        match push_to_hub(&hub_url, src, &u.remote_ref)? {
            Pushed::Done => {}
            Pushed::Moved => {
                let kept = format!("refs/dits/kept/{}", u.local_sha);
                eprintln!(
                    "dits: {hub}'s {} has moved elsewhere; keeping these commits' media under {kept}",
                    u.remote_ref
                );
                if push_to_hub(&hub_url, &u.local_sha, &kept)? != Pushed::Done {
                    eprintln!(
                        "git-dits: could not store the media of {} on {hub}; nothing was pushed",
                        u.remote_ref
                    );
                    return Ok(1);
                }
            }
            Pushed::Refused(why) => {
                eprintln!(
                    "git-dits: {hub} refused {}: {why}\nNothing was pushed to {remote}: the Git host must not hold commits whose media the hub does not.",
                    u.remote_ref
                );
                return Ok(1);
            }
        }
    }
    Ok(0)
}

/// What the hub made of one ref.
#[derive(Debug, PartialEq, Eq)]
enum Pushed {
    Done,
    /// Not a fast-forward of the hub's ref.
    Moved,
    /// Refused for another reason (a lock, a missing object, no connection), in Git's words.
    Refused(String),
}

fn push_to_hub(hub: &str, src: &str, dst: &str) -> Result<Pushed> {
    // stderr is the user's: the upload's progress and the hub's messages show as they come.
    let out = Command::new("git")
        .args(["push", "--no-verify", "--porcelain", hub])
        .arg(format!("{src}:{dst}"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("running git push to the Dits hub")?;
    let report = String::from_utf8_lossy(&out.stdout);
    if out.status.success() {
        return Ok(Pushed::Done);
    }
    let line = report
        .lines()
        .find(|l| l.starts_with('!'))
        .unwrap_or_default();
    if line.contains("non-fast-forward") || line.contains("fetch first") {
        return Ok(Pushed::Moved);
    }
    let why = line
        .rsplit('\t')
        .next()
        .filter(|w| !w.is_empty())
        .unwrap_or("see the messages above");
    Ok(Pushed::Refused(why.to_string()))
}

/// No hub is named: fine for commits without Dits media; refused otherwise, so no one
/// clones pointers whose media exists only on this machine.
fn no_hub(remote: &str, updates: &[Update]) -> Result<i32> {
    let mut rev_args: Vec<String> = updates.iter().map(|u| u.local_sha.clone()).collect();
    rev_args.push("--not".into());
    rev_args.push(format!("--remotes={remote}"));
    let keyring = dits_core::keyring::Keyring::plain();
    let (pointers, _) = git_remote_dits::media::pointers_in(&rev_args, &keyring)?;
    if pointers.is_empty() {
        return Ok(0);
    }
    eprintln!(
        "git-dits: the commits pushed to {remote} hold {} Dits media file(s), but no Dits hub is named to store the media.\nName one, then push again:\n  git config dits.hub dits://HOST:7443/OWNER/NAME\nor commit a .ditsconfig with\n  [dits]\n      hub = dits://HOST:7443/OWNER/NAME",
        pointers.len()
    );
    Ok(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZERO: &str = "0000000000000000000000000000000000000000";

    #[test]
    fn deletions_push_nothing() {
        let input = format!(
            "refs/heads/main {a} refs/heads/main {ZERO}\n(delete) {ZERO} refs/heads/old {a}\n\n",
            a = "a".repeat(40)
        );
        assert_eq!(
            updates(&input),
            [Update {
                local_ref: "refs/heads/main".into(),
                local_sha: "a".repeat(40),
                remote_ref: "refs/heads/main".into(),
            }]
        );
    }
}
