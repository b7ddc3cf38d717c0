//! `dits-hub serve`: the QUIC endpoint (the wire protocol, one request per stream) and
//! the HTTPS API, both on one port number (UDP and TCP), both authenticated per request.
//!
//! - [`state`]: the backends and counters every request shares, and the settings;
//! - [`quic`]: the QUIC shell and the dispatch of a request to its op;
//! - [`limits`]: what any peer may make the hub hold, and for how long;
//! - [`auth`]: tokens and roles;
//! - [`objects`], [`git_packs`], [`refs`], [`keys`]: the ops;
//! - [`http`], [`status`]: the HTTPS routes;
//! - [`dedup`]: what a recipe says of an asset, and the share of its previous version;
//! - [`rebuild`]: a stored file rebuilt from its recipe (transcodes, downloads);
//! - [`gc`], [`tier`]: garbage collection and the cold-tier reaper, run by `serve` on a
//!   schedule or by their commands, on the same backends and helpers as the ops.

pub mod auth;
pub mod dedup;
pub mod derived;
pub mod direct;
pub mod gc;
pub mod git_packs;
pub mod http;
pub mod http_accept;
pub mod keys;
pub mod limits;
pub mod objects;
pub mod quic;
pub mod rebuild;
pub mod refs;
pub mod state;
pub mod status;
pub mod tier;
#[cfg(test)]
mod wire_tests;

use std::sync::Arc;

use anyhow::Context;
use dits_wire::wire::ALPN;

use crate::backends::{open_blobs, open_locks, open_metadata, redact};
pub use state::{HubState, ServeOptions};

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
        crate::private::create_dir(data)
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
        Err(_) => redact(&options.metadata.clone().unwrap_or_default()),
    };
    let metadata = match metadata {
        Ok(m) => match m.meta.ping().await {
            Ok(()) => {
                report("metadata", described, Ok(()));
                Some(m)
            }
            Err(e) => {
                report("metadata", described, Err(e));
                None
            }
        },
        Err(e) => {
            report("metadata", described, Err(e));
            None
        }
    };
    let objects = redact(&options.objects.clone().unwrap_or_else(|| "local".into()));
    let checked = match open_blobs(data, options.objects.as_deref()) {
        Ok(blobs) => blobs.check().await.map_err(Into::into),
        Err(e) => Err(e),
    };
    report("objects", objects, checked);
    let locks_detail = options
        .locks
        .as_deref()
        .map_or_else(|| "with the metadata".into(), redact);
    let locks = match metadata {
        Some(m) => match open_locks(m, options.locks.as_deref()).await {
            Ok((_, l)) => l.any(0).await.map(|_| ()),
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
    if let Some(every) = options.gc_every {
        collect_on_schedule(state.clone(), every, options.gc_grace);
    }
    tier_on_schedule(state.clone(), options.reaper_every);
    if let Some(every) = options.scrub_every {
        scrub_on_schedule(state.clone(), every);
    }
    for _ in 0..options.workers {
        let state = state.clone();
        tokio::spawn(async move {
            let options = crate::worker::WorkerOptions::new(60, false);
            // A worker stops on a metadata error; start another after a pause.
            loop {
                if let Err(e) = crate::worker::run(state.clone(), &options).await {
                    tracing::warn!("job worker: {e:#}");
                }
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
        });
    }
    let identity = crate::tls::identity(
        &options.data,
        options.tls_cert.as_deref(),
        options.tls_key.as_deref(),
    )?;

    let quic_tls = crate::tls::server_config(&identity, &[ALPN])?;
    let quic_crypto = quinn::crypto::rustls::QuicServerConfig::try_from((*quic_tls).clone())?;
    let mut quic_config = quinn::ServerConfig::with_crypto(Arc::new(quic_crypto));
    let mut transport = dits_wire::tls::bulk_transport(dits_wire::tls::Congestion::from_env());
    transport.max_concurrent_bidi_streams(limits::MAX_STREAMS_PER_CONNECTION.into());
    transport.max_concurrent_uni_streams(0u32.into());
    transport.stream_receive_window(limits::STREAM_RECEIVE_WINDOW.into());
    transport.receive_window(limits::RECEIVE_WINDOW.into());
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
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(
        axum_server::tls_rustls::RustlsConfig::from_config(http_tls),
    )
    .handshake_timeout(limits::HTTP_HEADER_DEADLINE)
    .acceptor(http_accept::CappedAcceptor::new(
        state.limits.http_connections.clone(),
    ));
    let mut http = axum_server::from_tcp(tcp).acceptor(acceptor);
    http.http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits::HTTP_HEADER_DEADLINE);
    // A client may still speak HTTP/2 (prior knowledge); bound it like a QUIC connection.
    http.http_builder()
        .http2()
        .max_concurrent_streams(limits::MAX_STREAMS_PER_CONNECTION)
        .max_header_list_size(limits::SMALL_FRAME);
    let app = http::router(state.clone());

    // Backends first: whoever waits for "listening" has read them.
    if let Some(url) = &options.metadata {
        println!("dits-hub: metadata in {}", redact(url));
    }
    if let Some(url) = &options.locks {
        println!(
            "dits-hub: locks in {} (namespace dits:{}, written through to the metadata store)",
            redact(url),
            state.meta.namespace().await?
        );
    }
    println!("dits-hub: listening on {addr} (QUIC on UDP, HTTPS on TCP)");
    println!("dits-hub: certificate fingerprint {}", identity.fingerprint);
    println!("dits-hub: data in {}", options.data.display());
    println!("dits-hub: packs in {}", state.blobs.describe());
    if let Some(url) = &options.metadata {
        println!("dits-hub: metadata in {}", redact(url));
    }
    if let Some(url) = &options.locks {
        println!(
            "dits-hub: locks in {} (written through to the metadata store)",
            redact(url)
        );
    }
    use std::io::Write;
    std::io::stdout().flush()?;

    let quic = tokio::spawn(quic::accept_loop(endpoint.clone(), state));
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

/// Runs garbage collection every `every` seconds (the first after one period), for as
/// long as the hub serves. Where several hubs share the metadata, one collects at a time
/// and the others skip their turn.
fn collect_on_schedule(state: Arc<HubState>, every: u64, grace: i64) {
    tokio::spawn(async move {
        let options = crate::server::gc::GcOptions {
            grace,
            dry_run: false,
            repo: None,
        };
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(every.max(1)));
        tick.tick().await;
        loop {
            tick.tick().await;
            match crate::server::gc::collect(&state, &options).await {
                Ok(r) if r.ran => tracing::info!(
                    bytes = r.blob_bytes_deleted,
                    objects = r.objects_deleted,
                    packs_rewritten = r.packs_rewritten,
                    "garbage collection"
                ),
                Ok(_) => tracing::info!("garbage collection: another hub is collecting"),
                Err(e) => tracing::warn!("garbage collection: {e:#}"),
            }
        }
    });
}

/// Queues a scrub of every pack every `every` seconds (the first after one period).
fn scrub_on_schedule(state: Arc<HubState>, every: u64) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(every.max(1)));
        tick.tick().await;
        loop {
            tick.tick().await;
            match crate::worker::queue_scrubs(&state).await {
                Ok(n) => tracing::info!(packs = n, "scrubs queued"),
                Err(e) => tracing::warn!("queueing scrubs: {e:#}"),
            }
        }
    });
}

/// Writes the reads noted in memory to the index every minute and, with `reaper_every`,
/// runs the cold-tier reaper that often.
fn tier_on_schedule(state: Arc<HubState>, reaper_every: Option<u64>) {
    tokio::spawn(async move {
        let mut flush = tokio::time::interval(std::time::Duration::from_secs(60));
        let mut last_reap = std::time::Instant::now();
        loop {
            flush.tick().await;
            if let Err(e) = crate::server::tier::flush_access(&state).await {
                tracing::warn!("recording reads: {e:#}");
            }
            let Some(every) = reaper_every else { continue };
            if last_reap.elapsed().as_secs() < every {
                continue;
            }
            last_reap = std::time::Instant::now();
            match crate::server::tier::reap(&state, false).await {
                Ok(r) => tracing::info!(packs = r.packs, bytes = r.bytes, "cold-tier reaper"),
                Err(e) => tracing::warn!("cold-tier reaper: {e:#}"),
            }
        }
    });
}
