//! Times sealing and opening objects of an encrypted repository on one core, against a
//! BLAKE3 pass over the same bytes (what a push and a clone do to every byte
//! anyway): the bound encryption puts on transfers.
//!
//! Usage: cargo run --release -p dits-core --example seal_speed -- [MiB] [OBJECT_KiB]
//! Prints MB/s for BLAKE3, seal (each output dropped at once, and all kept) and open.

use std::time::Instant;

use dits_core::crypt::RepoSecret;
use dits_core::ChunkId;

fn main() {
    let mut args = std::env::args().skip(1);
    let total: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(256) << 20;
    let object: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(192) << 10;
    // Incompressible bytes, as encoded media is: BLAKE3's output stream.
    let objects: Vec<Vec<u8>> = (0..total / object)
        .map(|i| {
            let mut bytes = vec![0u8; object];
            let mut hasher = blake3::Hasher::new();
            hasher.update(&(i as u64).to_le_bytes());
            hasher.finalize_xof().fill(&mut bytes);
            bytes
        })
        .collect();
    let ids: Vec<ChunkId> = objects.iter().map(|o| ChunkId::of(o)).collect();
    let secret = RepoSecret::from_bytes([7; 32]);
    let rate = |what: &str, f: &mut dyn FnMut() -> usize| {
        let started = Instant::now();
        let bytes = f();
        let secs = started.elapsed().as_secs_f64();
        println!("{what:<8} {:>8.0} MB/s", bytes as f64 / 1e6 / secs);
    };
    rate("blake3", &mut || {
        objects
            .iter()
            .map(|o| {
                std::hint::black_box(blake3::hash(o));
                o.len()
            })
            .sum()
    });
    // Each sealed object dropped at once, as a push does once it is on the wire.
    rate("seal", &mut || {
        objects
            .iter()
            .zip(&ids)
            .map(|(o, id)| std::hint::black_box(secret.seal(id, o.len() as u32, o)).len())
            .sum()
    });
    let mut sealed = Vec::new();
    rate("seal+keep", &mut || {
        sealed = objects
            .iter()
            .zip(&ids)
            .map(|(o, id)| secret.seal(id, o.len() as u32, o))
            .collect();
        total
    });
    rate("open", &mut || {
        sealed
            .iter()
            .zip(&ids)
            .map(|(s, id)| secret.open(id, s).unwrap().1.len())
            .sum()
    });
}
