//! The wire protocol's shell and dispatch: accept QUIC connections, take each
//! bidirectional stream as one request, and [`handle_request`] — which knows nothing of
//! QUIC: it reads a request from any `AsyncRead` and answers on any `AsyncWrite`, so it
//! is tested in memory (`tokio::io::duplex`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use dits_wire::wire::{write_frame, Op, OpResult, Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::HubError;
use crate::meta::Role;
use crate::server::auth::authorize;
use crate::server::limits::{
    Deadlined, CONNECTION_IDLE, HANDSHAKE_DEADLINE, MEMBER_RECEIVE_WINDOW, STALL_DEADLINE,
};
use crate::server::refs::RefUpdates;
use crate::server::state::HubState;
use crate::server::{derived, direct, git_packs, keys, objects, refs};

/// Accepts connections until the endpoint closes, within the limits on connections per
/// address and in all and on handshakes under way; each connection is served on its own
/// task.
pub async fn accept_loop(endpoint: quinn::Endpoint, state: Arc<HubState>) {
    while let Some(incoming) = endpoint.accept().await {
        let address = incoming.remote_address();
        if incoming.may_retry()
            && state
                .limits
                .wants_retry(incoming.remote_address_validated())
        {
            // Costs the hub one stateless packet; a peer that can receive comes back with
            // a token proving its address.
            if incoming.retry().is_ok() {
                state.stats.quic_retries.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        let Some(slot) = state.limits.quic_connections.admit(address.ip()) else {
            tracing::warn!(%address, "connection refused: too many connections");
            incoming.refuse();
            continue;
        };
        let handshake = state.limits.handshake_started();
        let state = state.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let connection = tokio::time::timeout(HANDSHAKE_DEADLINE, incoming).await;
            drop(handshake);
            match connection {
                Ok(Ok(connection)) => serve_connection(state, connection).await,
                Ok(Err(e)) => tracing::debug!(%address, "handshake failed: {e}"),
                Err(_) => tracing::debug!(%address, "handshake did not finish in time"),
            }
        });
    }
}

/// Takes each bidirectional stream as a request on its own task; closes the connection
/// once it has had no request open for [`CONNECTION_IDLE`].
async fn serve_connection(state: Arc<HubState>, connection: quinn::Connection) {
    let open_requests = Arc::new(AtomicUsize::new(0));
    let member = Arc::new(AtomicBool::new(false));
    let counted = Arc::new(Counted::default());
    let _last = CountOnDrop(state.clone(), connection.clone(), counted.clone());
    loop {
        match tokio::time::timeout(CONNECTION_IDLE, connection.accept_bi()).await {
            Ok(Ok((send, recv))) => {
                let state = state.clone();
                let open = OpenRequest::new(&open_requests);
                let (connection, member) = (connection.clone(), member.clone());
                let counted = counted.clone();
                tokio::spawn(async move {
                    let _open = open;
                    let handled = serve_stream(state.clone(), send, recv).await;
                    counted.add(&state, &connection);
                    // Served means its token was good: the peer is a member, and gets the
                    // window a push over a long lossy link needs.
                    if handled == Handled::Served && !member.swap(true, Ordering::SeqCst) {
                        connection.set_receive_window(MEMBER_RECEIVE_WINDOW.into());
                    }
                });
            }
            Ok(Err(_)) => return,
            Err(_) if open_requests.load(Ordering::SeqCst) == 0 => {
                connection.close(0u32.into(), b"idle");
                return;
            }
            Err(_) => {}
        }
    }
}

/// The UDP bytes of one connection already added to the hub's counters: each request's
/// end adds what the connection carried since (headers, objects, acknowledgements,
/// handshakes), so the counters are current while the connection stays open.
#[derive(Default)]
struct Counted(std::sync::Mutex<(u64, u64)>);

impl Counted {
    fn add(&self, state: &HubState, connection: &quinn::Connection) {
        let udp = connection.stats();
        let mut counted = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (rx, tx) = (udp.udp_rx.bytes, udp.udp_tx.bytes);
        let stats = &state.stats;
        stats
            .quic_bytes_in
            .fetch_add(rx.saturating_sub(counted.0), Ordering::Relaxed);
        stats
            .quic_bytes_out
            .fetch_add(tx.saturating_sub(counted.1), Ordering::Relaxed);
        *counted = (rx.max(counted.0), tx.max(counted.1));
    }
}

/// Adds a connection's last bytes once it is no longer served.
struct CountOnDrop(Arc<HubState>, quinn::Connection, Arc<Counted>);

impl Drop for CountOnDrop {
    fn drop(&mut self) {
        self.2.add(&self.0, &self.1);
    }
}

/// Counts a request as open on its connection until dropped (a panicking request too).
struct OpenRequest(Arc<AtomicUsize>);

impl OpenRequest {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        OpenRequest(count.clone())
    }
}

impl Drop for OpenRequest {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One QUIC stream: the request, then the QUIC-only part of finishing it (telling a
/// refused client to stop sending, waiting for the answer to be delivered). Either side
/// waiting [`STALL_DEADLINE`] on the peer ends it.
async fn serve_stream(
    state: Arc<HubState>,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
) -> Handled {
    let mut send = Deadlined::new(send, STALL_DEADLINE);
    let mut recv = Deadlined::new(recv, STALL_DEADLINE);
    let handled = handle_request(&state, &mut recv, &mut send).await;
    if handled == Handled::Refused {
        let _ = recv.get_mut().stop(0u32.into());
    }
    let send = send.get_mut();
    let _ = send.finish();
    let _ = tokio::time::timeout(STALL_DEADLINE, send.stopped()).await;
    handled
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    Served,
    /// Answered with an error; whatever the client is still sending is unwanted.
    Refused,
}

/// Reads one request (a frame, then its body until `reader` ends), serves it and writes
/// the answer, or the refusal, to `writer`.
pub async fn handle_request<R, W>(state: &Arc<HubState>, reader: &mut R, writer: &mut W) -> Handled
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let request: Request = match state.limits.read_header(reader).await {
        Ok(r) => r,
        Err(refused) => {
            refused.log("request header");
            let _ = write_frame(writer, &refused.to_response()).await;
            return Handled::Refused;
        }
    };
    let op = op_name(&request.op);
    let started = std::time::Instant::now();
    let outcome = dispatch(state, request, reader, writer).await;
    state
        .metrics
        .observe(op, outcome.is_ok(), started.elapsed());
    match outcome {
        Ok(()) => Handled::Served,
        Err(refused) => {
            refused.log(op);
            let _ = write_frame(writer, &refused.to_response()).await;
            Handled::Refused
        }
    }
}

/// Writes a success header carrying `result`.
async fn reply<W: AsyncWrite + Unpin, T: OpResult>(
    writer: &mut W,
    result: &T,
) -> Result<(), HubError> {
    write_frame(writer, &Response::ok_with(result)?).await?;
    Ok(())
}

/// The role each op needs.
fn role_needed(op: &Op) -> Role {
    match op {
        Op::Put
        | Op::PutUrl { .. }
        | Op::PutDone { .. }
        | Op::PutStatus { .. }
        | Op::PutGitPack
        | Op::UpdateRefs { .. } => Role::Write,
        _ => Role::Read,
    }
}

async fn dispatch<R, W>(
    state: &Arc<HubState>,
    request: Request,
    reader: &mut R,
    writer: &mut W,
) -> Result<(), HubError>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let caller = authorize(
        state,
        &request.token,
        &request.repo,
        role_needed(&request.op),
    )
    .await?;
    let repo = caller.repo;
    let locks = caller.locks(state);
    match request.op {
        Op::Refs => {
            let refs = state.meta.refs(repo).await?;
            reply(writer, &dits_wire::wire::RefsResult { refs }).await
        }
        Op::Missing { ids } => reply(writer, &objects::missing(state, repo, &ids).await?).await,
        Op::Put => reply(writer, &objects::put(state, repo, reader).await?).await,
        Op::Wanted => reply(writer, &objects::wanted(state, repo).await?).await,
        Op::Get { ids } => objects::get(state, repo, &ids, writer).await,
        Op::GetUrls { ids } => reply(writer, &direct::get_urls(state, repo, &ids).await?).await,
        Op::PutUrl { bytes } => reply(writer, &direct::put_url(state, repo, bytes).await?).await,
        Op::PutDone { upload, objects } => {
            reply(
                writer,
                &direct::put_done(state, repo, &upload, &objects).await?,
            )
            .await
        }
        Op::PutStatus { uploads } => {
            reply(writer, &direct::put_status(state, repo, &uploads).await?).await
        }
        Op::PutGitPack => reply(writer, &git_packs::put(state, repo, reader).await?).await,
        Op::GitPacks { have } => reply(writer, &git_packs::list(state, repo, have).await?).await,
        Op::GetGitPack { id } => git_packs::get(state, repo, &id, writer).await,
        Op::GetDerived { recipe, kind } => derived::get(state, repo, &recipe, &kind, writer).await,
        Op::UpdateRefs {
            updates,
            packs,
            recipes,
            atomic,
        } => {
            let request = RefUpdates {
                updates,
                packs,
                recipes,
                atomic,
            };
            reply(writer, &refs::update(state, &caller, request).await?).await
        }
        Op::LockCreate { path, branch } => {
            reply(writer, &locks.create(&path, branch.as_deref()).await?).await
        }
        Op::LockList {
            path,
            id,
            owner,
            cursor,
            limit,
        } => reply(writer, &locks.list(path, id, owner, cursor, limit).await?).await,
        Op::LockVerify {
            paths,
            cursor,
            limit,
        } => reply(writer, &locks.verify(paths, cursor, limit).await?).await,
        Op::LockUnlock { id, force } => reply(writer, &locks.unlock(&id, force).await?).await,
        Op::Keys => reply(writer, &keys::status(state, &caller).await?).await,
        Op::KeyRegister { public_key } => {
            reply(writer, &keys::register(state, &caller, &public_key).await?).await
        }
        Op::KeyChange { change } => {
            reply(writer, &keys::change(state, &caller, change).await?).await
        }
    }
}

/// The op's name on the wire, for metrics and logs.
fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Refs => "refs",
        Op::Missing { .. } => "missing",
        Op::Put => "put",
        Op::Wanted => "wanted",
        Op::Get { .. } => "get",
        Op::GetUrls { .. } => "get-urls",
        Op::PutUrl { .. } => "put-url",
        Op::PutDone { .. } => "put-done",
        Op::PutStatus { .. } => "put-status",
        Op::PutGitPack => "put-git-pack",
        Op::GitPacks { .. } => "git-packs",
        Op::GetGitPack { .. } => "get-git-pack",
        Op::GetDerived { .. } => "get-derived",
        Op::UpdateRefs { .. } => "update-refs",
        Op::LockCreate { .. } => "lock-create",
        Op::LockList { .. } => "lock-list",
        Op::LockVerify { .. } => "lock-verify",
        Op::LockUnlock { .. } => "lock-unlock",
        Op::Keys => "keys",
        Op::KeyRegister { .. } => "key-register",
        Op::KeyChange { .. } => "key-change",
    }
}
