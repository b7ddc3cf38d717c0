//! The operator's HTTP routes: `/metrics` (Prometheus text), `/readyz` (every backend
//! answers), `/api/v1/stats` (counters as JSON, for tests and benchmarks), and the
//! middleware that counts and times every HTTP request.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::error::HubError;
use crate::server::state::HubState;

/// Counts and times every HTTP request as `http METHOD ROUTE` in `/metrics`.
pub async fn observe_http(
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
pub async fn metrics(
    State(state): State<Arc<HubState>>,
) -> (
    StatusCode,
    [(axum::http::HeaderName, &'static str); 1],
    String,
) {
    let mut out = String::new();
    state.stats.render(&mut out);
    state.metrics.render(&mut out);
    {
        use std::fmt::Write;
        let name = "dits_quic_handshakes_under_way";
        let _ = write!(
            out,
            "# HELP {name} QUIC handshakes admitted and not yet finished.\n# TYPE {name} gauge\n{name} {}\n",
            state.limits.handshakes_under_way()
        );
        // The queue and the scrub's findings are the metadata store's (shared by every
        // hub): read at each scrape, and left out if the store does not answer.
        if let Ok(counts) = state.meta.jobs().job_counts().await {
            let name = "dits_jobs";
            let _ = writeln!(
                out,
                "# HELP {name} Jobs in the queue by kind and state.\n# TYPE {name} gauge"
            );
            for (kind, job_state, n) in counts {
                let _ = writeln!(out, "{name}{{kind=\"{kind}\",state=\"{job_state}\"}} {n}");
            }
        }
        if let Ok(found) = state.meta.jobs().corrupt(100_000).await {
            let name = "dits_corrupt_objects";
            let lost = found.iter().filter(|c| !c.repaired).count();
            let _ = write!(
                out,
                "# HELP {name} Objects scrubs found corrupt or missing and no push has stored again.\n# TYPE {name} gauge\n{name} {lost}\n"
            );
        }
    }
    (
        StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
}

/// `/readyz`: whether the hub can serve, and each backend's answer.
#[derive(Debug, serde::Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub checks: Checks,
}

/// Each backend's answer: `"ok"`, or what is wrong (the details go to the log).
#[derive(Debug, serde::Serialize)]
pub struct Checks {
    pub metadata: String,
    pub objects: String,
    pub locks: String,
}

/// "ok", or the sentence a client would get for the failure (the cause is logged).
fn check(what: &str, result: anyhow::Result<()>) -> String {
    match result {
        Ok(()) => "ok".into(),
        Err(e) => {
            let e = HubError::from(e);
            e.log(what);
            e.to_string()
        }
    }
}

/// 200 when every backend answers, 503 naming those that don't.
pub async fn readyz(State(state): State<Arc<HubState>>) -> (StatusCode, Json<Readiness>) {
    let checks = Checks {
        metadata: check("readyz metadata", state.meta.ping().await),
        objects: check(
            "readyz objects",
            state.blobs.check().await.map_err(Into::into),
        ),
        locks: check("readyz locks", state.locks.any(0).await.map(|_| ())),
    };
    let ready = [&checks.metadata, &checks.objects, &checks.locks]
        .iter()
        .all(|c| c.as_str() == "ok");
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Readiness { ready, checks }))
}

/// `/api/v1/stats`: the counters, by name.
#[derive(Debug, serde::Serialize)]
pub struct StatsReport {
    pub object_bytes_in: u64,
    pub objects_in: u64,
    pub object_bytes_out: u64,
    pub git_bytes_in: u64,
    pub git_bytes_out: u64,
    pub objects_out: u64,
    pub blob_reads: u64,
    pub s3_write_requests: u64,
    pub direct_bytes_out: u64,
    pub direct_bytes_in: u64,
    pub verified_bytes: u64,
    pub quic_bytes_in: u64,
    pub quic_bytes_out: u64,
}

pub async fn stats(State(state): State<Arc<HubState>>) -> Json<StatsReport> {
    let s = &state.stats;
    let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    Json(StatsReport {
        object_bytes_in: n(&s.object_bytes_in),
        objects_in: n(&s.objects_in),
        object_bytes_out: n(&s.object_bytes_out),
        git_bytes_in: n(&s.git_bytes_in),
        git_bytes_out: n(&s.git_bytes_out),
        objects_out: n(&s.objects_out),
        blob_reads: n(&s.blob_reads),
        s3_write_requests: state.blobs.write_requests(),
        direct_bytes_out: n(&s.direct_bytes_out),
        direct_bytes_in: n(&s.direct_bytes_in),
        verified_bytes: n(&s.verified_bytes),
        quic_bytes_in: n(&s.quic_bytes_in),
        quic_bytes_out: n(&s.quic_bytes_out),
    })
}
