//! `dits-lock-bench URL TOKEN FINGERPRINT CLIENTS ROUNDS`: each of CLIENTS connections
//! (its own QUIC connection, as separate machines would have) takes and releases a lock
//! on its own path ROUNDS times. Prints round trips per second and per-operation latency
//! percentiles.

use std::time::{Duration, Instant};

use dits_wire::RemoteUrl;
use git_remote_dits::{Hub, TrustSettings};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, token, fingerprint, clients, rounds] = args.as_slice() else {
        anyhow::bail!("usage: dits-lock-bench URL TOKEN FINGERPRINT CLIENTS ROUNDS");
    };
    let url = RemoteUrl::parse(url).map_err(|e| anyhow::anyhow!(e))?;
    let clients: usize = clients.parse()?;
    let rounds: usize = rounds.parse()?;
    let trust = TrustSettings {
        fingerprint: Some(fingerprint.clone()),
        trust_on_first_use: false,
        ca_file: None,
    };
    let mut hubs = Vec::new();
    for _ in 0..clients {
        hubs.push(Hub::connect(&url, &trust, token).await?);
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (c, hub) in hubs.into_iter().enumerate() {
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(rounds * 2);
            for r in 0..rounds {
                let path = format!("bench/client-{c}/file-{}.mov", r % 8);
                let t = Instant::now();
                let lock = hub.lock(&path, None).await?;
                latencies.push(t.elapsed());
                let t = Instant::now();
                hub.unlock(&lock.id, false).await?;
                latencies.push(t.elapsed());
            }
            hub.close().await;
            anyhow::Ok(latencies)
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r??);
    }
    let elapsed = started.elapsed();
    all.sort();
    let trips = (clients * rounds) as f64;
    println!(
        "clients {clients:>3}  lock+unlock round trips/s {:>8.0}  per op: p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms  ({} ops)",
        trips / elapsed.as_secs_f64(),
        percentile(&all, 0.50).as_secs_f64() * 1e3,
        percentile(&all, 0.99).as_secs_f64() * 1e3,
        all.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        all.len()
    );
    Ok(())
}
