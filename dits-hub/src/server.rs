//! `dits-hub serve`: the QUIC endpoint (the wire protocol, one request per stream) and
//! the HTTPS API, both on one port number (UDP and TCP), both authenticated per request.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use dits_core::envelope;
use dits_core::recipe::Recipe;
use dits_core::ChunkId;
use dits_wire::url::valid_name;
use dits_wire::wire::{
    ids_from_hex, read_frame, read_object, write_frame, write_object, ErrorCode, Op, RefResult,
    RefUpdate, Request, Response, ALPN, ZERO_OID,
};
use serde_json::json;

use crate::backends::{open_locks, open_metadata};
use crate::blobs::LocalBlobs;
use crate::locks::{LockService, LockStore};
use crate::meta::{Location, MetaStore, Role, User};
use crate::mirror::GitMirror;

/// Counters for tests, benchmarks and (later) `/metrics`.
#[derive(Default)]
pub struct Stats {
    pub object_bytes_in: AtomicU64,
    pub objects_in: AtomicU64,
    pub object_bytes_out: AtomicU64,
    pub git_bytes_in: AtomicU64,
    pub git_bytes_out: AtomicU64,
    /// Objects served, and the ranged reads (GETs on S3) it took.
    pub objects_out: AtomicU64,
    pub blob_reads: AtomicU64,
    /// Of the objects clients asked about before uploading: already held (dedup hits,
    /// not sent) and missing (sent).
    pub object_hits: AtomicU64,
    pub object_misses: AtomicU64,
}

pub struct HubState {
    pub meta: Box<dyn MetaStore>,
    pub blobs: LocalBlobs,
    pub locks: Box<dyn LockStore>,
    pub mirror: GitMirror,
    pub stats: Stats,
    pub metrics: crate::metrics::Metrics,
}

fn open_blobs(data: &Path, objects: Option<&str>) -> anyhow::Result<LocalBlobs> {
    let local = LocalBlobs::open(&data.join("objects"))?;
    match objects {
        Some(url) => local.with_s3(url),
        None => Ok(local),
    }
}

impl HubState {
    /// Opens every backend the options name (inside the hub's runtime).
    pub async fn open(options: &ServeOptions) -> anyhow::Result<HubState> {
        let data = &options.data;
        std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
        let metadata = open_metadata(data, options.metadata.as_deref()).await?;
        let (meta, locks) = open_locks(metadata, options.locks.as_deref()).await?;
        Ok(HubState {
            meta,
            blobs: open_blobs(data, options.objects.as_deref())?,
            locks,
            mirror: GitMirror::new(data.join("git")),
            metrics: Default::default(),
            stats: Stats::default(),
        })
    }
}

pub struct ServeOptions {
    pub data: PathBuf,
    pub listen: SocketAddr,
    /// `postgres://…` for metadata (and locks without Redis); none: SQLite in `data`.
    pub metadata: Option<String>,
    /// `s3://BUCKET[/PREFIX]` for blobs; none: the data directory.
    pub objects: Option<String>,
    /// `redis://…` for locks; none: with the metadata.
    pub locks: Option<String>,
    /// A CA-issued certificate chain and key (PEM); without them the hub is self-signed.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

/// `dits-hub check-config`: opens each backend the settings name and reports each result;
/// true when all answer.
pub async fn check_config(options: &ServeOptions) -> bool {
    let mut all_ok = true;
    let mut report = |what: &str, detail: String, result: anyhow::Result<()>| match result {
        Ok(()) => println!("ok      {what:<9} {detail}"),
        Err(e) => {
            all_ok = false;
            println!("FAILED  {what:<9} {detail}: {e:#}");
        }
    };
    let data = &options.data;
    report(
        "data",
        data.display().to_string(),
        std::fs::create_dir_all(data)
            .and_then(|_| {
                let probe = data.join(".check-config");
                std::fs::write(&probe, b"ok")?;
                std::fs::remove_file(probe)
            })
            .map_err(Into::into),
    );
    let metadata = open_metadata(data, options.metadata.as_deref()).await;
    let described = match &metadata {
        Ok(m) => m.describe.clone(),
        Err(_) => options.metadata.clone().unwrap_or_default(),
    };
    let metadata = match metadata.and_then(|m| {
        tokio::task::block_in_place(|| m.meta.ping())?;
        Ok(m)
    }) {
        Ok(m) => {
            report("metadata", described, Ok(()));
            Some(m)
        }
        Err(e) => {
            report("metadata", described, Err(e));
            None
        }
    };
    let objects = options.objects.clone().unwrap_or_else(|| "local".into());
    report(
        "objects",
        objects,
        open_blobs(data, options.objects.as_deref())
            .and_then(|b| tokio::task::block_in_place(|| b.check()).map_err(Into::into)),
    );
    let locks_detail = options
        .locks
        .clone()
        .unwrap_or_else(|| "with the metadata".into());
    let locks = match metadata {
        Some(m) => match open_locks(m, options.locks.as_deref()).await {
            Ok((_, l)) => tokio::task::block_in_place(|| l.any(0)).map(|_| ()),
            Err(e) => Err(e),
        },
        None => Err(anyhow::anyhow!("needs the metadata store")),
    };
    report("locks", locks_detail, locks);
    report(
        "tls",
        match &options.tls_cert {
            Some(c) => c.display().to_string(),
            None => "self-signed, kept in the data directory".into(),
        },
        crate::tls::identity(
            data,
            options.tls_cert.as_deref(),
            options.tls_key.as_deref(),
        )
        .map(|_| ()),
    );
    all_ok
}

pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let state = HubState::open(&options).await?;
    let state = Arc::new(state);
    let identity = crate::tls::identity(
        &options.data,
        options.tls_cert.as_deref(),
        options.tls_key.as_deref(),
    )?;

    let quic_tls = crate::tls::server_config(&identity, &[ALPN])?;
    let quic_crypto = quinn::crypto::rustls::QuicServerConfig::try_from((*quic_tls).clone())?;
    let mut quic_config = quinn::ServerConfig::with_crypto(Arc::new(quic_crypto));
    let mut transport = dits_wire::tls::bulk_transport();
    transport.max_concurrent_bidi_streams(256u32.into());
    quic_config.transport_config(Arc::new(transport));
    // QUIC (UDP) and HTTPS (TCP) share one port number. Both are bound before the hub
    // says it is listening; with port 0, a UDP port whose TCP twin is taken is dropped
    // and another tried.
    let mut attempts = 0;
    let (endpoint, tcp) = loop {
        attempts += 1;
        let endpoint = dits_wire::tls::endpoint(options.listen, Some(quic_config.clone()))
            .with_context(|| format!("binding UDP {}", options.listen))?;
        let addr = endpoint.local_addr()?;
        match std::net::TcpListener::bind(addr) {
            Ok(tcp) => break (endpoint, tcp),
            Err(_) if options.listen.port() == 0 && attempts < 50 => continue,
            Err(e) => return Err(anyhow::anyhow!("binding TCP {addr} (HTTPS): {e}")),
        }
    };
    let addr = endpoint.local_addr()?;
    tcp.set_nonblocking(true)?;
    let http_tls = crate::tls::server_config(&identity, &[b"http/1.1"])?;
    let http = axum_server::from_tcp_rustls(
        tcp,
        axum_server::tls_rustls::RustlsConfig::from_config(http_tls),
    );
    let app = router(state.clone());

    // Backends first: whoever waits for "listening" has read them.
    if let Some(url) = &options.metadata {
        println!("dits-hub: metadata in {}", crate::backends::redact(url));
    }
    if let Some(url) = &options.locks {
        println!(
            "dits-hub: locks in {url} (namespace dits:{}, written through to the metadata store)",
            state.meta.namespace()?
        );
    }
    println!("dits-hub: listening on {addr} (QUIC on UDP, HTTPS on TCP)");
    println!("dits-hub: certificate fingerprint {}", identity.fingerprint);
    println!("dits-hub: data in {}", options.data.display());
    println!("dits-hub: packs in {}", state.blobs.describe());
    if let Some(url) = &options.metadata {
        println!("dits-hub: metadata in {}", crate::backends::redact(url));
    }
    if let Some(url) = &options.locks {
        println!("dits-hub: locks in {url} (written through to the metadata store)");
    }
    use std::io::Write;
    std::io::stdout().flush()?;

    let quic = tokio::spawn(accept_loop(endpoint.clone(), state));
    let http = tokio::spawn(async move { http.serve(app.into_make_service()).await });
    tokio::select! {
        r = quic => r?,
        r = http => r?.context("HTTPS server")?,
        _ = shutdown_signal() => {
            endpoint.close(0u32.into(), b"hub shutting down");
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("signal handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

async fn accept_loop(endpoint: quinn::Endpoint, state: Arc<HubState>) {
    while let Some(incoming) = endpoint.accept().await {
        let state = state.clone();
        tokio::spawn(async move {
            let connection = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!("handshake failed: {e}");
                    return;
                }
            };
            while let Ok((send, recv)) = connection.accept_bi().await {
                let state = state.clone();
                tokio::spawn(async move { handle_stream(state, send, recv).await });
            }
        });
    }
}

async fn handle_stream(
    state: Arc<HubState>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let request: Request = match read_frame(&mut recv).await {
        Ok(r) => r,
        Err(e) => {
            let _ = write_frame(
                &mut send,
                &Response::error(ErrorCode::BadRequest, format!("bad request: {e}")),
            )
            .await;
            let _ = send.finish();
            return;
        }
    };
    let op_name = op_name(&request.op);
    let started = std::time::Instant::now();
    let outcome = dispatch(&state, request, &mut send, &mut recv).await;
    state
        .metrics
        .observe(op_name, outcome.is_ok(), started.elapsed());
    if let Err(response) = outcome {
        tracing::info!(
            op = op_name,
            message = response.message.as_deref().unwrap_or(""),
            "refused"
        );
        let _ = recv.stop(0u32.into());
        let _ = write_frame(&mut send, &response).await;
    }
    let _ = send.finish();
    let _ = send.stopped().await;
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Refs => "refs",
        Op::Missing { .. } => "missing",
        Op::Put => "put",
        Op::Get { .. } => "get",
        Op::PutGitPack => "put-git-pack",
        Op::GitPacks { .. } => "git-packs",
        Op::GetGitPack { .. } => "get-git-pack",
        Op::UpdateRefs { .. } => "update-refs",
        Op::LockCreate { .. } => "lock-create",
        Op::LockList { .. } => "lock-list",
        Op::LockVerify { .. } => "lock-verify",
        Op::LockUnlock { .. } => "lock-unlock",
    }
}

/// A failure that is not the client's fault: "unavailable, try again" when a backend did
/// not answer, otherwise an internal error. Either way the log has the whole chain.
pub fn internal<E: Into<anyhow::Error>>(e: E) -> Response {
    let e: anyhow::Error = e.into();
    if e.chain().any(crate::meta::is_unavailable) {
        tracing::warn!("backend unavailable: {e:#}");
        Response::error(ErrorCode::Unavailable, format!("{e:#}"))
    } else {
        tracing::error!("internal error: {e:#}");
        Response::error(ErrorCode::Internal, format!("internal hub error: {e:#}"))
    }
}

/// Who is asking, for which repository, with what role; refusals name the repository.
pub fn authorize(
    state: &HubState,
    token: &str,
    repo: &str,
    need: Role,
) -> Result<(User, i64, Role), Response> {
    let user = match state.meta.user_for_token(token).map_err(internal)? {
        Some(u) => u,
        None if token.is_empty() => {
            return Err(Response::error(
                ErrorCode::Unauthenticated,
                format!("authentication required for {repo}: no token was sent"),
            ))
        }
        None => {
            return Err(Response::error(
                ErrorCode::Unauthenticated,
                format!("authentication failed for {repo}: the hub does not know this token"),
            ))
        }
    };
    let (repo_id, role) = state
        .meta
        .access(repo, &user)
        .map_err(internal)?
        .ok_or_else(|| {
            Response::error(
                ErrorCode::NotFound,
                format!(
                    "repository {repo} not found (or user {} has no access to it)",
                    user.name
                ),
            )
        })?;
    if role < need {
        return Err(Response::error(
            ErrorCode::Forbidden,
            format!("user {} may read {repo} but not write to it", user.name),
        ));
    }
    Ok((user, repo_id, role))
}

async fn dispatch(
    state: &Arc<HubState>,
    request: Request,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
) -> Result<(), Response> {
    let need = match request.op {
        Op::Put | Op::PutGitPack | Op::UpdateRefs { .. } => Role::Write,
        _ => Role::Read,
    };
    let (user, repo, role) = authorize(state, &request.token, &request.repo, need)?;
    let bad = |e: String| Response::error(ErrorCode::BadRequest, e);
    let locks = LockService {
        store: state.locks.as_ref(),
        repo,
        repo_name: &request.repo,
        user: &user,
        role,
    };
    let result = match request.op {
        Op::LockCreate { path, branch } => locks.create(&path, branch.as_deref())?,
        Op::LockList {
            path,
            id,
            owner,
            cursor,
            limit,
        } => locks.list(path, id, owner, cursor, limit)?,
        Op::LockVerify {
            paths,
            cursor,
            limit,
        } => locks.verify(paths, cursor, limit)?,
        Op::LockUnlock { id, force } => locks.unlock(&id, force)?,
        Op::Refs => json!({ "refs": state.meta.refs(repo).map_err(internal)? }),
        Op::Missing { ids } => {
            let ids = ids_from_hex(&ids).map_err(bad)?;
            let missing = state.meta.missing(repo, &ids).map_err(internal)?;
            let stats = &state.stats;
            stats
                .object_hits
                .fetch_add((ids.len() - missing.len()) as u64, Ordering::Relaxed);
            stats
                .object_misses
                .fetch_add(missing.len() as u64, Ordering::Relaxed);
            json!({ "missing": dits_wire::wire::ids_to_hex(&missing) })
        }
        Op::Put => put_objects(state, repo, recv).await?,
        Op::Get { ids } => {
            let ids = ids_from_hex(&ids).map_err(bad)?;
            return get_objects(state, repo, &ids, send).await;
        }
        Op::PutGitPack => put_git_pack(state, repo, recv).await?,
        Op::GitPacks { have } => {
            let have: HashSet<String> = have.into_iter().collect();
            let packs: Vec<String> = state
                .meta
                .git_packs(repo)
                .map_err(internal)?
                .into_iter()
                .filter(|p| !have.contains(p))
                .collect();
            json!({ "packs": packs })
        }
        Op::GetGitPack { id } => return get_git_pack(state, repo, &id, send).await,
        Op::UpdateRefs {
            updates,
            packs,
            recipes,
            atomic,
        } => {
            for u in &updates {
                if !valid_ref_name(&u.name) || !valid_oid(&u.old) || !valid_oid(&u.new) {
                    return Err(bad(format!("invalid ref update for {:?}", u.name)));
                }
            }
            for p in &packs {
                if state.meta.git_pack(repo, p).map_err(internal)?.is_none() {
                    return Err(Response::error(
                        ErrorCode::Rejected,
                        format!("Git pack {p} was never uploaded to this repository"),
                    ));
                }
            }
            let recipes = ids_from_hex(&recipes).map_err(bad)?;
            check_durable(state, repo, &recipes)?;
            let refused = tokio::task::block_in_place(|| {
                locked_paths_refusals(state, repo, &user, &updates, &packs)
            })?;
            let allowed: Vec<_> = updates
                .iter()
                .filter(|u| !refused.iter().any(|(n, _)| n == &u.name))
                .cloned()
                .collect();
            let mut results = if atomic && !refused.is_empty() {
                allowed
                    .iter()
                    .map(|u| RefResult {
                        name: u.name.clone(),
                        ok: false,
                        error: Some("atomic push failed".into()),
                    })
                    .collect()
            } else {
                state
                    .meta
                    .update_refs(repo, &allowed, &packs, atomic)
                    .map_err(internal)?
            };
            let moved: Vec<RefUpdate> = allowed
                .iter()
                .filter(|u| results.iter().any(|r| r.ok && r.name == u.name))
                .cloned()
                .collect();
            index_pushed_commits(state.clone(), repo, moved, packs.clone());
            for (name, why) in refused {
                tracing::info!(repo = %request.repo, user = %user.name, ref_name = %name, "{why}");
                results.push(RefResult {
                    name,
                    ok: false,
                    error: Some(why),
                });
            }
            json!({ "results": results })
        }
    };
    write_frame(send, &Response::ok(result))
        .await
        .map_err(internal)?;
    Ok(())
}

/// Ref updates that change a path someone else has locked (for that ref's branch), each
/// with the reason Git will print. The paths come from the pushed commits themselves, read
/// from the hub's mirror of the repository, never from the client.
fn locked_paths_refusals(
    state: &HubState,
    repo: i64,
    user: &User,
    updates: &[RefUpdate],
    packs: &[String],
) -> Result<Vec<(String, String)>, Response> {
    if !state.locks.any(repo).map_err(internal)? {
        return Ok(Vec::new());
    }
    let current: Vec<String> = state
        .meta
        .refs(repo)
        .map_err(internal)?
        .into_values()
        .collect();
    let mut refused = Vec::new();
    for u in updates.iter().filter(|u| u.new != ZERO_OID) {
        ensure_mirrored(state, repo, &u.new, packs)?;
        // What the ref already had is not this push's change; for a new ref, nothing the
        // hub already holds on any ref is.
        let exclude = if u.old == ZERO_OID {
            current.clone()
        } else {
            vec![u.old.clone()]
        };
        let paths = state
            .mirror
            .changed_paths(repo, &u.new, &exclude)
            .map_err(internal)?;
        let held = state.locks.on_paths(repo, &paths).map_err(internal)?;
        if let Some(l) = held
            .iter()
            .find(|l| l.owner_id != user.id && l.covers_ref(&u.name))
        {
            refused.push((
                u.name.clone(),
                format!(
                    "{} is locked by {} (lock {}); ask them to push and unlock it",
                    l.path, l.owner, l.id
                ),
            ));
        }
    }
    Ok(refused)
}

/// Makes sure the mirror holds every pack of the repository and of this push (a push's
/// pack leaves out what the hub already had, so history needs the older packs too).
fn ensure_mirrored(
    state: &HubState,
    repo: i64,
    commit: &str,
    packs: &[String],
) -> Result<(), Response> {
    let mut all = state.meta.git_packs(repo).map_err(internal)?;
    all.extend(packs.iter().cloned());
    let done = state.mirror.indexed_packs(repo).map_err(internal)?;
    for id in all.iter().filter(|id| !done.contains(*id)) {
        if let Some((key, _, _)) = state.meta.git_pack(repo, id).map_err(internal)? {
            let bytes = state.blobs.read(&key).map_err(internal)?;
            state.mirror.add_pack(repo, id, &bytes).map_err(internal)?;
        }
    }
    if state.mirror.has_commit(repo, commit).map_err(internal)? {
        return Ok(());
    }
    Err(Response::error(
        ErrorCode::Rejected,
        format!("commit {commit} is not in any Git pack pushed to this repository"),
    ))
}

/// Adds the commits an accepted push brought to the commit index, in the background
/// after the push is answered: the index serves queries, not the push's correctness, so a
/// failure is logged (and those commits are indexed again with the branch's next push
/// from an older base, or never).
fn index_pushed_commits(
    state: Arc<HubState>,
    repo: i64,
    updates: Vec<RefUpdate>,
    packs: Vec<String>,
) {
    if updates.iter().all(|u| u.new == ZERO_OID) {
        return;
    }
    tokio::task::spawn_blocking(move || {
        for u in updates.iter().filter(|u| u.new != ZERO_OID) {
            let indexed = ensure_mirrored(&state, repo, &u.new, &packs)
                .map_err(|r| anyhow::anyhow!(r.message.unwrap_or_default()))
                .and_then(|()| {
                    let exclude: Vec<String> = (u.old != ZERO_OID)
                        .then(|| u.old.clone())
                        .into_iter()
                        .collect();
                    state.mirror.commits(repo, &u.new, &exclude)
                })
                .and_then(|commits| state.meta.record_commits(repo, &commits));
            if let Err(e) = indexed {
                tracing::warn!(repo, ref_name = %u.name, "indexing pushed commits: {e:#}");
            }
        }
    });
}

fn valid_oid(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Git's own rules, the ones that matter for a name kept in a database and shown to users.
pub fn valid_ref_name(name: &str) -> bool {
    name.starts_with("refs/")
        && name.len() <= 1024
        && !name.contains("..")
        && !name.contains("//")
        && !name.ends_with('/')
        && !name.ends_with(".lock")
        && !name
            .bytes()
            .any(|b| b < 0x20 || b == 0x7f || b" ~^:?*[\\".contains(&b))
}

/// Every recipe, and every object each recipe lists, is stored for this repository.
fn check_durable(state: &HubState, repo: i64, recipes: &[ChunkId]) -> Result<(), Response> {
    let refuse = |m: String| {
        Response::error(
            ErrorCode::Rejected,
            format!("refusing to update refs: {m}; nothing was changed, push again"),
        )
    };
    if let Some(id) = state.meta.missing(repo, recipes).map_err(internal)?.first() {
        return Err(refuse(format!("recipe {} is not on the hub", id.short())));
    }
    for id in recipes {
        let bytes = read_object_plain(state, id).map_err(internal)?;
        let recipe =
            Recipe::decode(&bytes).map_err(|e| refuse(format!("recipe {}: {e}", id.short())))?;
        let ids: Vec<ChunkId> = recipe.unique_objects().map(|e| e.id).collect();
        if let Some(missing) = state.meta.missing(repo, &ids).map_err(internal)?.first() {
            return Err(refuse(format!(
                "file data is incomplete on the hub (recipe {} needs object {})",
                id.short(),
                missing.short()
            )));
        }
    }
    Ok(())
}

/// Reads and verifies one stored object.
fn read_object_plain(state: &HubState, id: &ChunkId) -> anyhow::Result<Vec<u8>> {
    let (pack, loc) = state
        .meta
        .location(id)?
        .ok_or_else(|| anyhow::anyhow!("object {} has no location", id.short()))?;
    let sealed = state
        .blobs
        .read_range(&pack, loc.offset, loc.stored_len as usize)?;
    envelope::open(id, &sealed, u64::from(loc.len))
        .map_err(|e| anyhow::anyhow!("object {} in {pack}: {e}", id.short()))
}

async fn put_objects(
    state: &Arc<HubState>,
    repo: i64,
    recv: &mut quinn::RecvStream,
) -> Result<serde_json::Value, Response> {
    let mut writer = None;
    let mut stored: Vec<(ChunkId, Location)> = Vec::new();
    let mut ids = Vec::new();
    let mut in_batch = HashSet::new();
    let mut bytes_in = 0u64;
    loop {
        let object = match read_object(recv).await {
            Ok(Some(o)) => o,
            Ok(None) => break,
            // A dropped upload commits nothing from this batch; earlier batches stay.
            Err(e) => {
                return Err(Response::error(
                    ErrorCode::BadRequest,
                    format!("upload interrupted: {e}"),
                ))
            }
        };
        let id = object.id;
        bytes_in += object.sealed.len() as u64;
        ids.push(id);
        // Hashing a chunk, one index lookup and a buffered write take well under a
        // millisecond: done inline (handing each to the blocking pool costs more than it
        // saves). The fsync at the end is what blocks; that part moves off the worker.
        (|| -> Result<(), Response> {
            if let Err(e) = object.open() {
                return Err(Response::error(
                    ErrorCode::Rejected,
                    format!("{e}; the upload was refused and nothing from it was stored"),
                ));
            }
            if !in_batch.insert(id) || state.meta.location(&id).map_err(internal)?.is_some() {
                return Ok(());
            }
            if writer.is_none() {
                writer = Some(state.blobs.writer().map_err(internal)?);
            }
            let w = writer.as_mut().expect("just created");
            let loc = Location {
                offset: w.len,
                stored_len: object.sealed.len() as u32,
                len: object.plain_len,
            };
            w.write(&object.sealed).map_err(internal)?;
            stored.push((id, loc));
            Ok(())
        })()?;
    }
    tokio::task::block_in_place(|| -> Result<(), Response> {
        let key = match writer {
            Some(w) => {
                let key = format!("chunks/{}.pack", w.hash().to_hex());
                state.blobs.commit(w, &key).map_err(internal)?;
                Some(key)
            }
            None => None,
        };
        state
            .meta
            .record_objects(repo, key.as_deref(), &stored, &ids)
            .map_err(internal)
    })?;
    state
        .stats
        .object_bytes_in
        .fetch_add(bytes_in, Ordering::Relaxed);
    state
        .stats
        .objects_in
        .fetch_add(ids.len() as u64, Ordering::Relaxed);
    Ok(json!({ "stored": stored.len(), "received": ids.len(), "bytes": bytes_in }))
}

async fn get_objects(
    state: &Arc<HubState>,
    repo: i64,
    ids: &[ChunkId],
    send: &mut quinn::SendStream,
) -> Result<(), Response> {
    if let Some(id) = state.meta.missing(repo, ids).map_err(internal)?.first() {
        return Err(Response::error(
            ErrorCode::NotFound,
            format!("object {id} is not on the hub"),
        ));
    }
    // Read first (neighbouring objects of one pack in one ranged read: one GET on S3),
    // so a storage error can still be a proper refusal.
    let objects = tokio::task::block_in_place(|| read_objects_coalesced(state, ids))
        .map_err(|e| internal(e.context("serving objects")))?;
    write_frame(send, &Response::ok(json!({ "count": ids.len() })))
        .await
        .map_err(internal)?;
    for (id, (plain_len, sealed)) in ids.iter().zip(objects) {
        if write_object(send, id, plain_len, &sealed).await.is_err() {
            return Ok(());
        }
        state.stats.objects_out.fetch_add(1, Ordering::Relaxed);
        state
            .stats
            .object_bytes_out
            .fetch_add(sealed.len() as u64, Ordering::Relaxed);
    }
    Ok(())
}

/// Objects closer than this in one pack are read together (the gap is read and dropped).
const COALESCE_GAP: u64 = 256 << 10;
/// At most this much in one read.
const COALESCE_MAX: u64 = 32 << 20;

/// The sealed bytes of `ids`, in order, read with as few ranged reads as possible.
fn read_objects_coalesced(
    state: &HubState,
    ids: &[ChunkId],
) -> anyhow::Result<Vec<(u32, Vec<u8>)>> {
    let mut located = Vec::with_capacity(ids.len());
    for id in ids {
        let (pack, loc) = state
            .meta
            .location(id)?
            .ok_or_else(|| anyhow::anyhow!("object {} has no location", id.short()))?;
        located.push((pack, loc));
    }
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by(|&a, &b| {
        (&located[a].0, located[a].1.offset).cmp(&(&located[b].0, located[b].1.offset))
    });
    let mut out: Vec<Option<(u32, Vec<u8>)>> = vec![None; ids.len()];
    let mut i = 0;
    while i < order.len() {
        let (pack, first) = &located[order[i]];
        let start = first.offset;
        let mut end = start + u64::from(first.stored_len);
        let mut j = i + 1;
        while j < order.len() {
            let (p, l) = &located[order[j]];
            let l_end = l.offset + u64::from(l.stored_len);
            if p != pack || l.offset > end + COALESCE_GAP || l_end - start > COALESCE_MAX {
                break;
            }
            end = end.max(l_end);
            j += 1;
        }
        let bytes = state
            .blobs
            .read_range(pack, start, (end - start) as usize)?;
        for &k in &order[i..j] {
            let l = &located[k].1;
            let from = (l.offset - start) as usize;
            out[k] = Some((l.len, bytes[from..from + l.stored_len as usize].to_vec()));
        }
        i = j;
    }
    Ok(out
        .into_iter()
        .map(|o| o.expect("every object read"))
        .collect())
}

/// Git packs are capped so one upload can't fill the disk unnoticed.
const MAX_GIT_PACK: u64 = 16 << 30;

async fn put_git_pack(
    state: &Arc<HubState>,
    repo: i64,
    recv: &mut quinn::RecvStream,
) -> Result<serde_json::Value, Response> {
    let mut writer = state.blobs.writer().map_err(internal)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let Some(n) = recv.read(&mut buf).await.map_err(|e| {
            Response::error(ErrorCode::BadRequest, format!("upload interrupted: {e}"))
        })?
        else {
            break;
        };
        writer.write(&buf[..n]).map_err(internal)?;
        if writer.len > MAX_GIT_PACK {
            return Err(Response::error(
                ErrorCode::Rejected,
                "Git pack is larger than 16 GiB",
            ));
        }
    }
    let head = state.blobs.read_range_tmp(&writer, 4).map_err(internal)?;
    if head != b"PACK" {
        return Err(Response::error(
            ErrorCode::Rejected,
            "the upload is not a Git pack",
        ));
    }
    let id = writer.hash().to_hex().to_string();
    let size = writer.len;
    let key = format!("git/{repo}/{id}.pack");
    state.blobs.commit(writer, &key).map_err(internal)?;
    state
        .meta
        .add_git_pack(repo, &id, &key, size)
        .map_err(internal)?;
    state.stats.git_bytes_in.fetch_add(size, Ordering::Relaxed);
    Ok(json!({ "id": id, "size": size }))
}

async fn get_git_pack(
    state: &Arc<HubState>,
    repo: i64,
    id: &str,
    send: &mut quinn::SendStream,
) -> Result<(), Response> {
    let Some((key, size, true)) = state.meta.git_pack(repo, id).map_err(internal)? else {
        return Err(Response::error(
            ErrorCode::NotFound,
            format!("Git pack {id} is not in this repository"),
        ));
    };
    write_frame(send, &Response::ok(json!({ "size": size })))
        .await
        .map_err(internal)?;
    let step = 4u64 << 20;
    let mut offset = 0;
    while offset < size {
        let n = step.min(size - offset);
        let bytes = state
            .blobs
            .read_range(&key, offset, n as usize)
            .map_err(internal)?;
        if send.write_all(&bytes).await.is_err() {
            return Ok(());
        }
        offset += n;
    }
    state.stats.git_bytes_out.fetch_add(size, Ordering::Relaxed);
    Ok(())
}

fn router(state: Arc<HubState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/api/v1/stats", get(stats))
        .route("/metrics", get(metrics))
        .route("/readyz", get(readyz))
        .route("/api/v1/repos/{owner}/{name}/refs", get(http_refs))
        .route(
            "/api/v1/repos/{owner}/{name}/locks",
            get(http_list_locks).post(http_create_lock),
        )
        .route(
            "/api/v1/repos/{owner}/{name}/locks/verify",
            post(http_verify_locks),
        )
        .route(
            "/api/v1/repos/{owner}/{name}/locks/{id}/unlock",
            post(http_unlock),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe_http,
        ))
        .with_state(state)
}

/// Counts and times every HTTP request as `http METHOD ROUTE` in `/metrics`.
async fn observe_http(
    State(state): State<Arc<HubState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let op = format!("http {} {route}", request.method());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let ok = response.status().is_success();
    state.metrics.observe(&op, ok, started.elapsed());
    response
}

/// Prometheus text: byte/object counters and per-operation request series.
async fn metrics(
    State(state): State<Arc<HubState>>,
) -> (
    StatusCode,
    [(axum::http::HeaderName, &'static str); 1],
    String,
) {
    let s = &state.stats;
    let mut out = String::new();
    for (name, help, v) in [
        (
            "dits_object_bytes_in_total",
            "Bytes of chunks and recipes received.",
            &s.object_bytes_in,
        ),
        (
            "dits_objects_in_total",
            "Chunks and recipes received.",
            &s.objects_in,
        ),
        (
            "dits_object_bytes_out_total",
            "Bytes of chunks and recipes served.",
            &s.object_bytes_out,
        ),
        (
            "dits_objects_out_total",
            "Chunks and recipes served.",
            &s.objects_out,
        ),
        (
            "dits_blob_reads_total",
            "Ranged reads of packs (GETs on S3).",
            &s.blob_reads,
        ),
        (
            "dits_object_hits_total",
            "Objects a client asked about that the hub already held (not uploaded again).",
            &s.object_hits,
        ),
        (
            "dits_object_misses_total",
            "Objects a client asked about that the hub lacked (then uploaded).",
            &s.object_misses,
        ),
        (
            "dits_git_bytes_in_total",
            "Bytes of Git packs received.",
            &s.git_bytes_in,
        ),
        (
            "dits_git_bytes_out_total",
            "Bytes of Git packs served.",
            &s.git_bytes_out,
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
            v.load(Ordering::Relaxed)
        ));
    }
    state.metrics.render(&mut out);
    (
        StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
}

/// 200 when every backend answers, 503 naming those that don't.
async fn readyz(State(state): State<Arc<HubState>>) -> (StatusCode, Json<serde_json::Value>) {
    let checks = tokio::task::block_in_place(|| {
        let show = |r: anyhow::Result<()>| match r {
            Ok(()) => json!("ok"),
            Err(e) => json!(format!("{e:#}")),
        };
        json!({
            "metadata": show(state.meta.ping()),
            "objects": show(state.blobs.check().map_err(anyhow::Error::from)),
            "locks": show(state.locks.any(0).map(|_| ())),
        })
    });
    let ready = checks
        .as_object()
        .is_some_and(|m| m.values().all(|v| v == "ok"));
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ready": ready, "checks": checks })))
}

async fn stats(State(state): State<Arc<HubState>>) -> Json<serde_json::Value> {
    let s = &state.stats;
    Json(json!({
        "object_bytes_in": s.object_bytes_in.load(Ordering::Relaxed),
        "objects_in": s.objects_in.load(Ordering::Relaxed),
        "object_bytes_out": s.object_bytes_out.load(Ordering::Relaxed),
        "git_bytes_in": s.git_bytes_in.load(Ordering::Relaxed),
        "git_bytes_out": s.git_bytes_out.load(Ordering::Relaxed),
        "objects_out": s.objects_out.load(Ordering::Relaxed),
        "blob_reads": s.blob_reads.load(Ordering::Relaxed),
        "s3_write_requests": state.blobs.s3_writes.load(Ordering::Relaxed),
    }))
}

fn http_error(r: Response) -> (StatusCode, Json<serde_json::Value>) {
    let status = match r.code {
        Some(ErrorCode::Unauthenticated) => StatusCode::UNAUTHORIZED,
        Some(ErrorCode::NotFound) => StatusCode::NOT_FOUND,
        Some(ErrorCode::Forbidden) => StatusCode::FORBIDDEN,
        Some(ErrorCode::BadRequest) => StatusCode::BAD_REQUEST,
        Some(ErrorCode::Rejected) => StatusCode::CONFLICT,
        Some(ErrorCode::Unavailable) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut body = json!({ "message": r.message });
    if let Some(lock) = r.result.get("lock") {
        body["lock"] = lock.clone();
    }
    (status, Json(body))
}

type HttpError = (StatusCode, Json<serde_json::Value>);
type HttpResult = Result<(StatusCode, Json<serde_json::Value>), HttpError>;

/// Who is calling over HTTP: the user, the repository's id, their role, and its name.
struct HttpCaller {
    user: User,
    repo: i64,
    role: Role,
    repo_name: String,
}

impl HttpCaller {
    /// The lock operations, as this caller.
    fn locks<'a>(&'a self, state: &'a HubState) -> LockService<'a> {
        LockService {
            store: state.locks.as_ref(),
            repo: self.repo,
            repo_name: &self.repo_name,
            user: &self.user,
            role: self.role,
        }
    }
}

/// Authorises an HTTP request on OWNER/NAME with at least `need`.
fn http_auth(
    state: &HubState,
    owner: &str,
    name: &str,
    headers: &HeaderMap,
    need: Role,
) -> Result<HttpCaller, HttpError> {
    if !valid_name(owner) || !valid_name(name) {
        return Err(http_error(Response::error(
            ErrorCode::BadRequest,
            "invalid repository name",
        )));
    }
    let repo = format!("{owner}/{name}");
    let (user, id, role) = authorize(state, &bearer(headers), &repo, need).map_err(http_error)?;
    Ok(HttpCaller {
        user,
        repo: id,
        role,
        repo_name: repo,
    })
}

/// A JSON body, with a message that says what is wrong with it (an empty body is `{}`).
fn json_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<T, (StatusCode, Json<serde_json::Value>)> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        http_error(Response::error(
            ErrorCode::BadRequest,
            format!("the request body is not the JSON this endpoint takes: {e}"),
        ))
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateLockBody {
    path: String,
    #[serde(default)]
    branch: Option<String>,
    /// Git LFS clients send the ref they are on; informational here.
    #[serde(default, rename = "ref")]
    _ref: Option<serde_json::Value>,
}

async fn http_create_lock(
    State(state): State<Arc<HubState>>,
    UrlPath((owner, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> HttpResult {
    let caller = http_auth(&state, &owner, &name, &headers, Role::Read)?;
    let body: CreateLockBody = json_body(&body)?;
    let out = caller
        .locks(&state)
        .create(&body.path, body.branch.as_deref())
        .map_err(http_error)?;
    Ok((StatusCode::CREATED, Json(out)))
}

#[derive(serde::Deserialize)]
struct ListQuery {
    path: Option<String>,
    id: Option<String>,
    owner: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

async fn http_list_locks(
    State(state): State<Arc<HubState>>,
    UrlPath((owner, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
    query: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> HttpResult {
    let caller = http_auth(&state, &owner, &name, &headers, Role::Read)?;
    let axum::extract::Query(q) = query.map_err(|e| {
        http_error(Response::error(
            ErrorCode::BadRequest,
            format!("bad query: {e}"),
        ))
    })?;
    let out = caller
        .locks(&state)
        .list(q.path, q.id, q.owner, q.cursor, q.limit)
        .map_err(http_error)?;
    Ok((StatusCode::OK, Json(out)))
}

#[derive(serde::Deserialize)]
struct VerifyBody {
    #[serde(default)]
    paths: Option<Vec<String>>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default, rename = "ref")]
    _ref: Option<serde_json::Value>,
}

async fn http_verify_locks(
    State(state): State<Arc<HubState>>,
    UrlPath((owner, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> HttpResult {
    let caller = http_auth(&state, &owner, &name, &headers, Role::Read)?;
    let body: VerifyBody = json_body(&body)?;
    let out = caller
        .locks(&state)
        .verify(body.paths, body.cursor, body.limit)
        .map_err(http_error)?;
    Ok((StatusCode::OK, Json(out)))
}

#[derive(serde::Deserialize)]
struct UnlockBody {
    #[serde(default)]
    force: bool,
    #[serde(default, rename = "ref")]
    _ref: Option<serde_json::Value>,
}

async fn http_unlock(
    State(state): State<Arc<HubState>>,
    UrlPath((owner, name, id)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> HttpResult {
    let caller = http_auth(&state, &owner, &name, &headers, Role::Read)?;
    let body: UnlockBody = json_body(&body)?;
    let out = caller
        .locks(&state)
        .unlock(&id, body.force)
        .map_err(http_error)?;
    Ok((StatusCode::OK, Json(out)))
}

fn bearer(headers: &HeaderMap) -> String {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string()
}

async fn http_refs(
    State(state): State<Arc<HubState>>,
    UrlPath((owner, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, HttpError> {
    let caller = http_auth(&state, &owner, &name, &headers, Role::Read)?;
    let refs = state
        .meta
        .refs(caller.repo)
        .map_err(|e| http_error(internal(e)))?;
    Ok(Json(json!({ "refs": refs })))
}
