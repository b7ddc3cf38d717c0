//! The wire protocol served in memory: [`handle_request`] over `tokio::io::duplex`
//! against a hub on a temporary directory (SQLite and a local object directory), no
//! sockets. Lock enforcement reads pushed commits, so those tests make a real Git
//! repository with the `git` CLI.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use dits_core::envelope::{seal, CompressionHint};
use dits_core::ChunkId;
use dits_wire::wire::{
    ids_to_hex, read_object, write_object, ErrorCode, LockResult, Op, PutGitPackResult, RefUpdate,
    RefsResult, Request, Response, UpdateRefsResult, MAX_FRAME, ZERO_OID,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::meta::Role;
use crate::server::quic::{handle_request, Handled};
use crate::server::state::{HubState, ServeOptions};

const REPO: &str = "alice/film";
const C: &str = "3333333333333333333333333333333333333333";

/// A hub with alice (owner of alice/film) and bob (a writer in it).
struct TestHub {
    state: Arc<HubState>,
    alice: String,
    bob: String,
    dir: tempfile::TempDir,
}

async fn hub() -> TestHub {
    let dir = tempfile::tempdir().unwrap();
    let options = ServeOptions::embedded(dir.path().join("hub"));
    let state = HubState::open(&options).await.unwrap();
    let alice = state.meta.add_user("alice").await.unwrap();
    let bob = state.meta.add_user("bob").await.unwrap();
    state.meta.create_repo("alice", "film").await.unwrap();
    state
        .meta
        .set_member("alice", "film", "bob", Role::Write)
        .await
        .unwrap();
    TestHub {
        state: Arc::new(state),
        alice,
        bob,
        dir,
    }
}

/// `value` as a frame: its length (u32, big-endian), then its JSON.
fn frame(value: &impl serde::Serialize) -> Vec<u8> {
    let json = serde_json::to_vec(value).unwrap();
    let mut out = (json.len() as u32).to_be_bytes().to_vec();
    out.extend(json);
    out
}

impl TestHub {
    /// Sends `bytes` as a client would on one stream (then finishes its side); returns how
    /// the hub handled it, its answer header and the bytes after it.
    async fn exchange(&self, bytes: Vec<u8>) -> (Handled, Response, Vec<u8>) {
        let (mut client_out, mut hub_in) = tokio::io::duplex(64 << 10);
        let (mut hub_out, mut client_in) = tokio::io::duplex(64 << 10);
        let state = self.state.clone();
        let hub =
            tokio::spawn(async move { handle_request(&state, &mut hub_in, &mut hub_out).await });
        // The hub may refuse before reading the body; then this write just fails.
        tokio::spawn(async move {
            let _ = client_out.write_all(&bytes).await;
            let _ = client_out.shutdown().await;
        });
        let mut answer = Vec::new();
        client_in.read_to_end(&mut answer).await.unwrap();
        let handled = hub.await.unwrap();
        let len = u32::from_be_bytes(answer[..4].try_into().unwrap()) as usize;
        let response: Response = serde_json::from_slice(&answer[4..4 + len]).unwrap();
        (handled, response, answer[4 + len..].to_vec())
    }

    /// One request as `token`, with `body` after the header.
    async fn call(&self, token: &str, op: Op, body: &[u8]) -> Response {
        let request = Request {
            token: token.to_string(),
            repo: REPO.to_string(),
            op,
        };
        let mut bytes = frame(&request);
        bytes.extend_from_slice(body);
        self.exchange(bytes).await.1
    }

    async fn update_refs(
        &self,
        token: &str,
        updates: &[(&str, &str, &str)],
        packs: Vec<String>,
        atomic: bool,
    ) -> UpdateRefsResult {
        let updates = updates
            .iter()
            .map(|(name, old, new)| RefUpdate {
                name: name.to_string(),
                old: old.to_string(),
                new: new.to_string(),
            })
            .collect();
        let op = Op::UpdateRefs {
            updates,
            packs,
            recipes: Vec::new(),
            atomic,
        };
        let response = self.call(token, op, b"").await;
        assert!(response.ok, "{response:?}");
        response.result_as().unwrap()
    }

    async fn refs(&self) -> Vec<(String, String)> {
        let response = self.call(&self.alice, Op::Refs, b"").await;
        let refs: RefsResult = response.result_as().unwrap();
        refs.refs.into_iter().collect()
    }
}

fn refs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, o)| (n.to_string(), o.to_string()))
        .collect()
}

/// Two commits, the second on the first, uploaded as one Git pack: their ids and the
/// pack's.
async fn two_commits(hub: &TestHub) -> (String, String, String) {
    let work = hub.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let (a, _) = commit_adding(&work, "a.mp4");
    std::fs::write(work.join("b.mp4"), b"another").unwrap();
    git(&work, &["add", "b.mp4"]);
    git(&work, &["commit", "-q", "-m", "add b"]);
    let b = String::from_utf8(git(&work, &["rev-parse", "HEAD"])).unwrap();
    let b = b.trim().to_string();
    let uploaded = hub
        .call(&hub.alice, Op::PutGitPack, &pack_of(&work, &b))
        .await;
    assert!(uploaded.ok, "{uploaded:?}");
    (a, b, uploaded.result_as::<PutGitPackResult>().unwrap().id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ref_moves_only_from_the_value_the_client_saw() {
    let hub = hub().await;
    let (a, b, pack) = two_commits(&hub).await;
    let (a, b) = (a.as_str(), b.as_str());
    let created = hub
        .update_refs(
            &hub.alice,
            &[("refs/heads/main", ZERO_OID, a)],
            vec![pack],
            false,
        )
        .await;
    assert!(created.results[0].ok, "{created:?}");

    // Someone else's push moved main to A; this client still thinks it is absent.
    let stale = hub
        .update_refs(
            &hub.alice,
            &[("refs/heads/main", ZERO_OID, b)],
            vec![],
            false,
        )
        .await;
    assert!(!stale.results[0].ok);
    assert_eq!(stale.results[0].error.as_deref(), Some("stale info"));
    assert_eq!(hub.refs().await, refs(&[("refs/heads/main", a)]));

    let moved = hub
        .update_refs(&hub.alice, &[("refs/heads/main", a, b)], vec![], false)
        .await;
    assert!(moved.results[0].ok, "{moved:?}");
    assert_eq!(hub.refs().await, refs(&[("refs/heads/main", b)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_atomic_push_with_one_stale_ref_moves_none() {
    let hub = hub().await;
    let (a, b, pack) = two_commits(&hub).await;
    let (a, b) = (a.as_str(), b.as_str());
    hub.update_refs(
        &hub.alice,
        &[("refs/heads/main", ZERO_OID, a)],
        vec![pack],
        false,
    )
    .await;
    let updates = [
        ("refs/heads/main", a, b),
        // Stale: topic does not exist.
        ("refs/heads/topic", C, b),
    ];
    let atomic = hub.update_refs(&hub.alice, &updates, vec![], true).await;
    assert!(atomic.results.iter().all(|r| !r.ok), "{atomic:?}");
    assert_eq!(
        atomic.results[0].error.as_deref(),
        Some("atomic push failed")
    );
    assert_eq!(hub.refs().await, refs(&[("refs/heads/main", a)]));

    // Without atomic, the good one moves on its own.
    let each = hub.update_refs(&hub.alice, &updates, vec![], false).await;
    assert!(each.results[0].ok && !each.results[1].ok, "{each:?}");
    assert_eq!(hub.refs().await, refs(&[("refs/heads/main", b)]));
}

/// `git` in `dir`, hermetic (no system or user config, fixed author and date).
fn git(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Alice")
        .env("GIT_AUTHOR_EMAIL", "alice@example.com")
        .env("GIT_COMMITTER_NAME", "Alice")
        .env("GIT_COMMITTER_EMAIL", "alice@example.com")
        .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
        .output()
        .expect("running git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A repository with one commit adding `path`: the commit's id and a pack of it.
fn commit_adding(dir: &Path, path: &str) -> (String, Vec<u8>) {
    git(dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join(path), b"not really a video").unwrap();
    git(dir, &["add", path]);
    git(dir, &["commit", "-q", "-m", "add a clip"]);
    let head = String::from_utf8(git(dir, &["rev-parse", "HEAD"])).unwrap();
    let head = head.trim().to_string();
    let pack = pack_of(dir, &head);
    (head, pack)
}

/// A Git pack of `rev` and everything it reaches.
fn pack_of(dir: &Path, rev: &str) -> Vec<u8> {
    let mut child = Command::new("git")
        .args(["pack-objects", "--stdout", "--revs", "-q"])
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "{rev}").unwrap();
    let pack = child.wait_with_output().unwrap();
    assert!(pack.status.success());
    pack.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_changing_a_path_locked_by_someone_else_is_refused() {
    let hub = hub().await;
    let work = hub.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let (commit, pack) = commit_adding(&work, "clip.mp4");

    let uploaded = hub.call(&hub.alice, Op::PutGitPack, &pack).await;
    assert!(uploaded.ok, "{uploaded:?}");
    let pack_id = uploaded.result_as::<PutGitPackResult>().unwrap().id;
    let lock = Op::LockCreate {
        path: "clip.mp4".into(),
        branch: None,
    };
    let locked = hub.call(&hub.bob, lock.clone(), b"").await;
    assert!(locked.ok, "{locked:?}");

    let main = [("refs/heads/main", ZERO_OID, commit.as_str())];
    let refused = hub
        .update_refs(&hub.alice, &main, vec![pack_id.clone()], false)
        .await;
    assert!(!refused.results[0].ok);
    let why = refused.results[0].error.as_deref().unwrap_or_default();
    assert!(why.contains("clip.mp4 is locked by bob"), "{why}");
    assert_eq!(hub.refs().await, refs(&[]));

    // Someone asking for the same lock hears who holds it.
    let again = hub.call(&hub.alice, lock, b"").await;
    assert_eq!(again.code, Some(ErrorCode::Rejected));
    let holder: LockResult = again.result_as().unwrap();
    assert_eq!(holder.lock.owner.name, "bob");

    // The holder's own push goes through.
    let accepted = hub.update_refs(&hub.bob, &main, vec![pack_id], false).await;
    assert!(accepted.results[0].ok, "{accepted:?}");
    assert_eq!(hub.refs().await, refs(&[("refs/heads/main", &commit)]));
}

#[tokio::test]
async fn a_frame_claiming_more_than_the_limit_is_refused_before_reading_it() {
    let hub = hub().await;
    let (handled, response, rest) = hub.exchange((MAX_FRAME + 1).to_be_bytes().to_vec()).await;
    assert_eq!(handled, Handled::Refused);
    assert_eq!(response.code, Some(ErrorCode::BadRequest));
    let message = response.message.unwrap_or_default();
    assert!(message.contains("too large"), "{message}");
    assert!(rest.is_empty());
}

#[tokio::test]
async fn an_unknown_op_is_answered_with_bad_request() {
    let hub = hub().await;
    let request = serde_json::json!({ "token": hub.alice, "repo": REPO, "op": "frobnicate" });
    let (handled, response, _) = hub.exchange(frame(&request)).await;
    assert_eq!(handled, Handled::Refused);
    assert_eq!(response.code, Some(ErrorCode::BadRequest));
    let message = response.message.unwrap_or_default();
    assert!(message.contains("frobnicate"), "{message}");
}

#[tokio::test]
async fn an_unknown_token_is_unauthenticated_and_a_reader_may_not_write() {
    let hub = hub().await;
    let response = hub.call("dits_nobody", Op::Refs, b"").await;
    assert_eq!(response.code, Some(ErrorCode::Unauthenticated));

    let carol = hub.state.meta.add_user("carol").await.unwrap();
    hub.state
        .meta
        .set_member("alice", "film", "carol", Role::Read)
        .await
        .unwrap();
    assert!(hub.call(&carol, Op::Refs, b"").await.ok);
    let response = hub.call(&carol, Op::Put, b"").await;
    assert_eq!(response.code, Some(ErrorCode::Forbidden));
    let message = response.message.unwrap_or_default();
    assert!(
        message.contains("may read alice/film but not write"),
        "{message}"
    );
}

#[tokio::test]
async fn an_upload_that_is_not_a_git_pack_is_rejected() {
    let hub = hub().await;
    let response = hub.call(&hub.alice, Op::PutGitPack, b"JUNK and more").await;
    assert_eq!(response.code, Some(ErrorCode::Rejected));
}

/// `n` distinct objects, uploaded to alice/film; returns their ids in upload order.
async fn upload_objects(hub: &TestHub, n: u32) -> Vec<ChunkId> {
    let mut body = Vec::new();
    let mut ids = Vec::new();
    for i in 0..n {
        let plain: Vec<u8> = (0..4096u32).map(|j| (i * 31 + j * 7) as u8).collect();
        let id = ChunkId::of(&plain);
        let sealed = seal(&plain, CompressionHint::Probe);
        write_object(&mut body, &id, plain.len() as u32, &sealed)
            .await
            .unwrap();
        ids.push(id);
    }
    let response = hub.call(&hub.alice, Op::Put, &body).await;
    assert!(response.ok, "{response:?}");
    ids
}

async fn get(hub: &TestHub, ids: Vec<String>) -> (Response, Vec<u8>) {
    let request = Request {
        token: hub.alice.clone(),
        repo: REPO.to_string(),
        op: Op::Get { ids },
    };
    let (_, response, rest) = hub.exchange(frame(&request)).await;
    (response, rest)
}

#[tokio::test]
async fn get_serves_more_objects_than_one_read_group_in_order() {
    let hub = hub().await;
    let ids = upload_objects(&hub, 70).await;
    let mut wanted = ids.clone();
    wanted.reverse();
    let (response, rest) = get(&hub, ids_to_hex(&wanted)).await;
    assert!(response.ok, "{response:?}");
    let mut reader = &rest[..];
    for id in &wanted {
        let object = read_object(&mut reader).await.unwrap().expect("an object");
        assert_eq!(object.id, *id);
        object.verify().unwrap();
    }
    assert!(read_object(&mut reader).await.unwrap().is_none());
}

#[tokio::test]
async fn get_refuses_an_id_named_twice_and_more_ids_than_the_cap() {
    let hub = hub().await;
    let ids = upload_objects(&hub, 2).await;
    let twice = ids_to_hex(&[ids[0], ids[1], ids[0]]);
    let (response, rest) = get(&hub, twice).await;
    assert_eq!(response.code, Some(ErrorCode::BadRequest));
    assert!(rest.is_empty());
    let message = response.message.unwrap_or_default();
    assert!(message.contains("more than once"), "{message}");

    let many = vec![ids[0].to_hex(); crate::server::objects::MAX_GET_IDS + 1];
    let (response, _) = get(&hub, many).await;
    assert_eq!(response.code, Some(ErrorCode::BadRequest));
    let message = response.message.unwrap_or_default();
    assert!(message.contains("at most"), "{message}");
}
