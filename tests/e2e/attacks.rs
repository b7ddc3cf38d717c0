//! Attacks on the client by a hostile hub, with real processes: the hub's own database is
//! edited behind its back to make it answer what a hostile hub would.

use std::path::{Path, PathBuf};

use dits_tests::{HubProcess, TestEnv};

/// A hub whose `refs` answer holds a value that `git` would read as an option: a client
/// that passed it on (`git rev-list … --not <value>` on push) would write a file of the
/// hub's choosing. Clone and push must both refuse the answer, say why, and write nothing.
#[test]
fn ref_values_from_a_hostile_hub_never_reach_git_as_options() {
    let env = TestEnv::new();
    let (hub, _token) = env.alice_hub();
    let repo = env.repo("a");
    std::fs::write(repo.join("notes.txt"), "take 1\n").unwrap();
    env.git(&repo, &["add", "notes.txt"]);
    env.git(&repo, &["commit", "-q", "-m", "notes"]);
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);
    env.git(&repo, &["push", "-q", "origin", "main"]);

    let pwned = env.dir.path().join("pwned");
    let db = rusqlite::Connection::open(hub.data.join("hub.sqlite")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    db.execute(
        "INSERT INTO refs (repo_id, name, oid) SELECT id, 'refs/heads/evil', ?1 FROM repos WHERE owner = 'alice' AND name = 'film'",
        [format!("--output={}", pwned.display())],
    )
    .unwrap();
    drop(db);

    let clone = env.git_output(env.dir.path(), &["clone", &hub.url("alice/film"), "b"]);
    let stderr = String::from_utf8_lossy(&clone.stderr);
    assert!(!clone.status.success(), "clone took the answer: {stderr}");
    assert!(stderr.contains("invalid ref"), "no clear error: {stderr}");

    std::fs::write(repo.join("notes.txt"), "take 2\n").unwrap();
    env.git(&repo, &["commit", "-q", "-am", "more notes"]);
    let push = env.git_output(&repo, &["push", "origin", "main"]);
    let stderr = String::from_utf8_lossy(&push.stderr);
    assert!(!push.status.success(), "push took the answer: {stderr}");
    assert!(stderr.contains("invalid ref"), "no clear error: {stderr}");
    assert!(!pwned.exists(), "the hub's value reached git as an option");
}

/// What a stranger's flood of request headers came to.
#[derive(Debug, Default)]
struct Flood {
    streams: usize,
    /// Streams the hub answered with a refusal (rather than reading the claimed header).
    refused: usize,
}

/// From 127.0.0.2, with no token: `connections` connections, each opening `streams` request
/// streams (the hub lets 32 be open at once), each claiming a 64 MiB or 16 MiB header and
/// sending that much, as long as the hub keeps taking it.
async fn flood_headers(
    port: u16,
    fingerprint: String,
    connections: usize,
    streams: usize,
) -> Flood {
    use dits_wire::wire::{read_frame, Response};
    let endpoint = pinned_endpoint("127.0.0.2:0", fingerprint);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let connection = endpoint
            .connect(([127, 0, 0, 1], port).into(), "localhost")
            .unwrap()
            .await
            .expect("the hub accepts a connection from a stranger");
        for s in 0..streams {
            let connection = connection.clone();
            tasks.spawn(async move {
                let claim: usize = if s % 2 == 0 { 64 << 20 } else { 16 << 20 };
                let (mut send, mut recv) = connection.open_bi().await.ok()?;
                send.write_all(&(claim as u32).to_be_bytes()).await.ok()?;
                let block = vec![b' '; 1 << 20];
                let mut sent = 0;
                while sent < claim && send.write_all(&block).await.is_ok() {
                    sent += block.len();
                }
                let _ = send.finish();
                let answer: Response = read_frame(&mut recv).await.ok()?;
                Some(!answer.ok)
            });
        }
    }
    let mut flood = Flood::default();
    while let Some(done) = tasks.join_next().await {
        flood.streams += 1;
        if done.unwrap() == Some(true) {
            flood.refused += 1;
        }
    }
    endpoint.close(0u32.into(), b"done");
    flood
}

/// 256 streams of unauthenticated 64 MiB / 16 MiB header frames on four connections: before
/// the hub read a whole header before checking the token, 256 × 64 MiB. Now it refuses
/// headers over 16 MiB unread and reads larger-than-small ones within a shared 64 MiB
/// budget, so its peak memory stays small, and a member's clone from another address
/// succeeds meanwhile. Then one address opening more than 256 connections gets refused.
#[test]
fn a_flood_of_unauthenticated_headers_leaves_the_hub_small_and_serving() {
    let env = TestEnv::new();
    let (hub, _token) = env.alice_hub();
    let repo = env.repo("a");
    env.commit_file(&repo, &dits_tests::media().path("base.mp4"), "clip.mp4");
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);
    env.git(&repo, &["push", "-q", "origin", "main"]);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let flood = rt.spawn(flood_headers(hub.port, hub.fingerprint.clone(), 4, 64));
    let clone = env.clone_with(&hub.url("alice/film"), "b", &[]);
    assert!(
        clone.status.success(),
        "a member's clone failed during the flood: {}",
        String::from_utf8_lossy(&clone.stderr)
    );
    assert!(dits_tests::same_bytes(
        &repo.join("clip.mp4"),
        &env.dir.path().join("b/clip.mp4")
    ));
    let flood = rt.block_on(flood).unwrap();
    assert_eq!(flood.streams, 256);
    assert_eq!(
        flood.refused, 256,
        "every stranger's header is refused: {flood:?}"
    );
    let peak = hub.peak_rss_mib();
    assert!(peak < 512, "the hub's peak RSS reached {peak} MiB");

    // One address may hold 256 connections at once; the hub refuses the rest.
    let (admitted, refused) = rt.block_on(async {
        let endpoint = pinned_endpoint("127.0.0.2:0", hub.fingerprint.clone());
        let mut held = Vec::new();
        let mut refused = 0;
        for _ in 0..264 {
            let connecting = endpoint.connect(([127, 0, 0, 1], hub.port).into(), "localhost");
            match connecting.unwrap().await {
                Ok(c) => held.push(c),
                Err(_) => refused += 1,
            }
        }
        (held.len(), refused)
    });
    assert!(
        admitted <= 256 && refused >= 8,
        "{admitted} admitted, {refused} refused"
    );
}

/// A clip committed and pushed to alice/film as `main`, then a commit adding `notes.txt`
/// with `notes` on top, not pushed: the repository, `main` and the unpushed commit.
fn pushed_then_committed(
    env: &TestEnv,
    hub: &HubProcess,
    notes: &str,
) -> (PathBuf, String, String) {
    let repo = env.repo("a");
    env.commit_file(&repo, &dits_tests::media().path("base.mp4"), "clip.mp4");
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);
    env.git(&repo, &["push", "-q", "origin", "main"]);
    let main = env.git(&repo, &["rev-parse", "HEAD"]).trim().to_string();
    std::fs::write(repo.join("notes.txt"), notes).unwrap();
    env.git(&repo, &["add", "notes.txt"]);
    env.git(&repo, &["commit", "-q", "-m", "notes"]);
    let next = env.git(&repo, &["rev-parse", "HEAD"]).trim().to_string();
    (repo, main, next)
}

/// A Git pack made by hand: `git pack-objects ARGS --stdout` in `repo`, fed `input`.
fn pack_objects(env: &TestEnv, repo: &Path, args: &[&str], input: &str) -> Vec<u8> {
    let mut full = vec!["pack-objects"];
    full.extend_from_slice(args);
    full.push("--stdout");
    let mut child = env
        .command("git", repo, &full)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{input}").unwrap();
    }
    let pack = child.wait_with_output().unwrap().stdout;
    assert!(pack.starts_with(b"PACK"));
    pack
}

/// A pack uploaded for an update that then failed (its old value was stale) is indexed
/// into the hub's mirror but not made visible. A second update naming its commit without
/// sending the pack again used to be accepted while clients were never sent that pack: the
/// repository could no longer be cloned. Now the ref and the pack become visible together.
#[test]
fn a_ref_naming_a_commit_from_a_failed_updates_pack_stays_clonable() {
    let env = TestEnv::new();
    let (hub, token) = env.alice_hub();
    let (repo, main, next) = pushed_then_committed(&env, &hub, "take 3\n");
    let pack = pack_objects(&env, &repo, &["--revs"], &format!("{next}\n^{main}"));

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = crate::hub_client(&hub, "alice/film", &token).await;
        let pack_id = client.put_git_pack(&pack).await.unwrap();
        let update = |old: &str| dits_wire::wire::RefUpdate {
            name: "refs/heads/main".into(),
            old: old.to_string(),
            new: next.clone(),
        };
        let stale = client
            .update_refs(vec![update(&next)], vec![pack_id], Vec::new(), true)
            .await
            .unwrap();
        assert!(!stale[0].ok, "a stale old value moved main: {stale:?}");
        let moved = client
            .update_refs(vec![update(&main)], Vec::new(), Vec::new(), true)
            .await
            .unwrap();
        assert!(moved[0].ok, "{moved:?}");
        client.close().await;
    });
    let clone = env.clone_with(&hub.url("alice/film"), "b", &[]);
    assert!(
        clone.status.success(),
        "the repository no longer clones: {}",
        String::from_utf8_lossy(&clone.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(env.dir.path().join("b/notes.txt")).unwrap(),
        "take 3\n"
    );
}

/// A peer whose packets come from a spoofed address: a UDP relay on 127.0.0.2 passes the
/// client's packets to the hub and throws the hub's answers away, as the real owner of a
/// forged source address would never answer. Returns the relay's address.
async fn one_way_relay(hub: std::net::SocketAddr) -> std::net::SocketAddr {
    let relay = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let address = relay.local_addr().unwrap();
    tokio::spawn(async move {
        let mut datagram = vec![0u8; 65536];
        while let Ok((n, from)) = relay.recv_from(&mut datagram).await {
            if from != hub {
                let _ = relay.send_to(&datagram[..n], hub).await;
            }
        }
    });
    address
}

/// A client endpoint on `addr` that trusts only the certificate `fingerprint`.
fn pinned_endpoint(addr: &str, fingerprint: String) -> quinn::Endpoint {
    let verifier = dits_wire::tls::PinnedVerifier::new(Some(fingerprint), false, None);
    let mut endpoint = dits_wire::tls::endpoint(addr.parse().unwrap(), None).unwrap();
    endpoint.set_default_client_config(
        dits_wire::tls::quic_client_config(
            verifier,
            dits_wire::tls::IDLE_TIMEOUT,
            dits_wire::tls::Congestion::DEFAULT,
        )
        .unwrap(),
    );
    endpoint
}

/// A number from the hub's `/metrics`.
fn metric(port: u16, name: &str) -> u64 {
    let (status, body) = dits_tests::hub::https_get(port, "metrics");
    assert_eq!(status, 200, "/metrics: {body}");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{body}"))
}

/// 300 handshakes from spoofed sources (they can send but never receive) on one address:
/// before, each held a connection slot until it timed out, so the address's 256 were gone
/// and an honest client there was refused (on many addresses, the hub's 4,096). Now, with
/// more than 64 handshakes under way, a new peer gets a QUIC Retry first: the spoofed ones
/// never answer it and hold nothing, and the honest client proves its address and connects.
#[test]
fn handshakes_from_spoofed_addresses_cannot_take_the_slots_of_real_clients() {
    let env = TestEnv::new();
    let (hub, _token) = env.alice_hub();
    let hub_address: std::net::SocketAddr = ([127, 0, 0, 1], hub.port).into();
    let rt = tokio::runtime::Runtime::new().unwrap();
    const SPOOFED: u64 = 300;
    let spoofer = rt.block_on(async {
        let endpoint = pinned_endpoint("127.0.0.1:0", hub.fingerprint.clone());
        for _ in 0..SPOOFED {
            let relay = one_way_relay(hub_address).await;
            let connecting = endpoint.connect(relay, "localhost").unwrap();
            tokio::spawn(connecting);
        }
        endpoint
    });

    // Every spoofed handshake has reached the hub once it has either admitted it or sent
    // it a Retry.
    let started = std::time::Instant::now();
    let (mut under_way, mut retries) = (0, 0);
    while started.elapsed() < std::time::Duration::from_secs(8) {
        under_way = metric(hub.port, "dits_quic_handshakes_under_way");
        retries = metric(hub.port, "dits_quic_retries_total");
        if under_way + retries >= SPOOFED {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        under_way <= 64 && retries >= SPOOFED - 64,
        "{under_way} spoofed handshakes hold slots, {retries} retries sent"
    );

    let honest = rt.block_on(async {
        let endpoint = pinned_endpoint("127.0.0.2:0", hub.fingerprint.clone());
        let connecting = endpoint.connect(hub_address, "localhost").unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), connecting).await
    });
    assert!(
        matches!(honest, Ok(Ok(_))),
        "an honest client on the spoofed address was not served: {honest:?}"
    );
    spoofer.close(0u32.into(), b"done");
}

/// A read-only member asks for one stored object 100,000 times in one `get`, then 1,000
/// times: the hub refuses both before reading anything (at most 1,024 ids, each once), its
/// memory stays small, and the same member's honest `get` of it is still served.
#[test]
fn a_read_only_members_get_of_one_object_many_times_is_refused() {
    let env = TestEnv::new();
    let (hub, _token) = env.alice_hub();
    let repo = env.repo("a");
    env.commit_file(&repo, &dits_tests::media().path("base.mp4"), "clip.mp4");
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);
    env.git(&repo, &["push", "-q", "origin", "main"]);
    let bob = hub.admin(&["user", "add", "bob"]);
    hub.admin(&["repo", "member", "alice/film", "bob", "--role", "read"]);
    let recipe = env.recipe_of(&repo, "HEAD:clip.mp4");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = crate::hub_client(&hub, "alice/film", &bob).await;
        for (times, why) in [(100_000, "at most 1024"), (1_000, "more than once")] {
            let err = client
                .get_objects(&vec![recipe; times], |_, _| Ok(()))
                .await
                .unwrap_err();
            assert_eq!(
                err.code(),
                Some(dits_wire::wire::ErrorCode::BadRequest),
                "{err}"
            );
            assert!(err.to_string().contains(why), "{err}");
        }
        let mut served = 0;
        client
            .get_objects(&[recipe], |_, _| {
                served += 1;
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(served, 1);
    });
    let peak = hub.peak_rss_mib();
    assert!(peak < 512, "the hub's peak RSS reached {peak} MiB");
}

/// A TCP connection to the hub's HTTPS port from `source`.
fn tcp_from(source: &str, port: u16) -> std::net::TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let source: std::net::SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&source.into()).unwrap();
    let hub: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    socket.connect(&hub.into()).unwrap();
    socket.into()
}

/// Whether the hub has closed `stream` by `deadline` (it reads EOF or an error).
fn closed_by(
    stream: &mut impl std::io::Read,
    set_timeout: impl Fn(std::time::Duration),
    deadline: std::time::Instant,
) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        set_timeout(left);
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// Slowloris on the HTTPS side: 2,000 idle TCP connections from one address, and 20 more
/// from another that finish the TLS handshake and then send a request's headers without
/// ever ending them. A request from a third address is answered meanwhile, and the hub
/// has closed every one of the idle connections within 30 s (the handshake and each
/// request's headers get 10 s; one address holds at most 256 connections).
#[test]
fn idle_and_slow_https_connections_are_dropped_and_others_served() {
    use std::io::Write;
    let env = TestEnv::new();
    let (hub, _token) = env.alice_hub();
    let started = std::time::Instant::now();

    let verifier = dits_wire::tls::PinnedVerifier::new(Some(hub.fingerprint.clone()), false, None);
    let mut tls = rustls::ClientConfig::builder_with_provider(dits_wire::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = std::sync::Arc::new(tls);
    let mut slow: Vec<_> = (0..20)
        .map(|_| {
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let client = rustls::ClientConnection::new(tls.clone(), name).unwrap();
            let mut stream = rustls::StreamOwned::new(client, tcp_from("127.0.0.3", hub.port));
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n")
                .unwrap();
            stream.flush().unwrap();
            stream
        })
        .collect();
    let mut idle: Vec<_> = (0..2000).map(|_| tcp_from("127.0.0.2", hub.port)).collect();

    let (status, body) = dits_tests::https_get(hub.port, "healthz");
    assert_eq!(
        (status, body.as_str()),
        (200, "ok\n"),
        "a normal request during the flood"
    );

    let deadline = started + std::time::Duration::from_secs(30);
    let mut slow_open = 0;
    for s in slow.iter_mut() {
        let tcp = s.sock.try_clone().unwrap();
        if !closed_by(s, |t| tcp.set_read_timeout(Some(t)).unwrap(), deadline) {
            slow_open += 1;
        }
    }
    let mut idle_open = 0;
    for s in idle.iter_mut() {
        let tcp = s.try_clone().unwrap();
        if !closed_by(s, |t| tcp.set_read_timeout(Some(t)).unwrap(), deadline) {
            idle_open += 1;
        }
    }
    assert_eq!(
        (slow_open, idle_open),
        (0, 0),
        "connections still open {} s after they were made",
        started.elapsed().as_secs()
    );
    let (status, _) = dits_tests::https_get(hub.port, "healthz");
    assert_eq!(status, 200, "the hub still answers afterwards");
}

/// A member uploads Git packs the hub must not take: bytes that merely start with `PACK`,
/// and a well-formed pack holding a commit without its tree; then asks to move `main` to a
/// commit no pack holds. Each is refused with the reason, nothing moves, and the
/// repository still clones as it was.
#[test]
fn garbage_git_packs_and_unknown_commits_are_refused_and_the_repository_stays_clonable() {
    let env = TestEnv::new();
    let (hub, token) = env.alice_hub();
    let (repo, main, orphan) = pushed_then_committed(&env, &hub, "not pushed\n");
    // A commit whose pack leaves out its tree and blob.
    let commit_only = pack_objects(&env, &repo, &[], &orphan);

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = crate::hub_client(&hub, "alice/film", &token).await;
        let mut garbage = b"PACK\0\0\0\x02\0\0\0\x03".to_vec();
        garbage.extend(dits_tests::noise(1 << 20, 3));
        for (pack, what) in [
            (garbage, "garbage"),
            (commit_only, "a commit without its tree"),
        ] {
            let err = client.put_git_pack(&pack).await.unwrap_err();
            assert_eq!(
                err.code(),
                Some(dits_wire::wire::ErrorCode::Rejected),
                "{what}: {err}"
            );
            assert!(
                err.to_string().contains("not a valid Git pack"),
                "{what}: {err}"
            );
        }
        let update = dits_wire::wire::RefUpdate {
            name: "refs/heads/main".into(),
            old: main.clone(),
            new: orphan.clone(),
        };
        let err = client
            .update_refs(vec![update], Vec::new(), Vec::new(), true)
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some(dits_wire::wire::ErrorCode::Rejected),
            "{err}"
        );
        assert!(err.to_string().contains("not in any Git pack"), "{err}");
        let refs = client.refs().await.unwrap();
        assert_eq!(refs.get("refs/heads/main"), Some(&main), "main moved");
    });
    let clone = env.clone_with(&hub.url("alice/film"), "b", &[]);
    assert!(
        clone.status.success(),
        "{}",
        String::from_utf8_lossy(&clone.stderr)
    );
    assert!(dits_tests::same_bytes(
        &repo.join("clip.mp4"),
        &env.dir.path().join("b/clip.mp4")
    ));
}

/// bob, with a repository of his own, uploads bytes alice's private repository holds and
/// bytes nobody holds: the hub answers both the same way and writes both, so neither the
/// answer nor the work behind it tells bob what alice stores.
#[test]
fn bob_cannot_tell_whether_alices_private_repository_holds_a_chunk() {
    let env = TestEnv::new();
    let (hub, alice) = env.alice_hub();
    let bob = hub.admin(&["user", "add", "bob"]);
    hub.admin(&["repo", "create", "bob/scratch"]);
    let object = |seed: u64| {
        let bytes = dits_tests::noise(200 << 10, seed);
        let sealed = dits_core::envelope::seal(&bytes, dits_core::envelope::CompressionHint::Try);
        (dits_core::ChunkId::of(&bytes), bytes.len() as u32, sealed)
    };
    let put = |hub: &git_remote_dits::Hub, objects: Vec<(dits_core::ChunkId, u32, Vec<u8>)>| {
        let hub = hub.clone();
        async move {
            let (tx, rx) = tokio::sync::mpsc::channel(objects.len());
            for object in objects {
                tx.send(object).await.unwrap();
            }
            drop(tx);
            hub.put_object_stream(rx).await.unwrap()
        }
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (alices, nobodys) = (object(1), object(2));
    rt.block_on(async {
        let as_alice = crate::hub_client(&hub, "alice/film", &alice).await;
        // With a second object, so that alice's pack is not the very pack (named by its
        // objects) bob's upload of the one chunk makes.
        put(&as_alice, vec![alices.clone(), object(3)]).await;
    });
    let packs_before = hub.chunk_packs();
    let answers = rt.block_on(async {
        let as_bob = crate::hub_client(&hub, "bob/scratch", &bob).await;
        let missing = as_bob.missing(&[alices.0, nobodys.0]).await.unwrap();
        assert_eq!(
            missing,
            vec![alices.0, nobodys.0],
            "missing is per repository"
        );
        let err = as_bob
            .get_objects(&[alices.0], |_, _| Ok(()))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some(dits_wire::wire::ErrorCode::NotFound),
            "{err}"
        );
        (
            put(&as_bob, vec![alices.clone()]).await,
            put(&as_bob, vec![nobodys.clone()]).await,
        )
    });
    assert_eq!(answers.0, answers.1, "the answers differ: {answers:?}");
    assert_eq!(
        hub.chunk_packs(),
        packs_before + 2,
        "the hub did not do the same work for both uploads"
    );
}
