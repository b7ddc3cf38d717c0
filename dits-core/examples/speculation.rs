//! Times `clean_with` on files with and without speculative chunking, to choose
//! `SpeculationPolicy::min_size`: each file is cleaned into a fresh store (next to the
//! file, so put them on tmpfs to time the CPU rather than a disk), its own bytes as the
//! stream and itself as the working file, alternating the two policies.
//!
//! Usage: cargo run --release -p dits-core --example speculation -- [RUNS] FILE...
//! Prints, per file: size, median milliseconds without and with speculation.

use std::path::Path;
use std::time::Instant;

use dits_core::clean::{clean_with, SpeculationPolicy};
use dits_core::media::LayoutOptions;
use dits_core::LocalStore;

fn time_clean(path: &Path, policy: SpeculationPolicy) -> f64 {
    let store_dir = tempfile::tempdir_in(path.parent().unwrap_or(Path::new("."))).unwrap();
    let mut store = LocalStore::open(store_dir.path()).unwrap();
    let stream = std::fs::File::open(path).unwrap();
    let started = Instant::now();
    clean_with(
        stream,
        Some(path),
        &mut store,
        LayoutOptions::default(),
        policy,
    )
    .unwrap();
    started.elapsed().as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let runs = match args.first().and_then(|a| a.parse::<usize>().ok()) {
        Some(n) => {
            args.remove(0);
            n
        }
        None => 7,
    };
    let ahead = SpeculationPolicy { min_size: 0 };
    println!("| file | MB | without (ms) | with (ms) |");
    println!("|---|---:|---:|---:|");
    for file in &args {
        let path = Path::new(file);
        let size = std::fs::metadata(path).unwrap().len();
        let (mut without, mut with) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            without.push(time_clean(path, SpeculationPolicy::NEVER));
            with.push(time_clean(path, ahead));
        }
        println!(
            "| {} | {:.1} | {:.1} | {:.1} |",
            path.file_name().unwrap().to_string_lossy(),
            size as f64 / 1e6,
            median(without),
            median(with)
        );
    }
}
