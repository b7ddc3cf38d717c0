//! A lossy, delayed UDP link on loopback for the end-to-end tests (this machine's kernel
//! has no `netem`): a relay that drops a share of the datagrams each way at random (seeded,
//! so a run can be repeated) and delays the rest by half the round trip. The same job as
//! `../shared/tools/lossy-udp.py` (which `bench/lossy.sh` uses), in-process, so the tests
//! need nothing outside the repository.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running relay; stops when dropped.
pub struct LossyLink {
    /// Where clients send: the relay's client-facing port on 127.0.0.1.
    pub port: u16,
    /// Datagrams dropped and passed so far (both ways).
    pub dropped: Arc<AtomicU64>,
    pub passed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl LossyLink {
    /// Relays between clients and the UDP service at `target`, dropping `loss` (0..1) of
    /// the datagrams each way and delaying each by `rtt / 2`.
    pub fn start(target: SocketAddr, loss: f64, rtt: Duration) -> LossyLink {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        }
        let port = front.local_addr().unwrap().port();
        let link = LossyLink {
            port,
            dropped: Arc::default(),
            passed: Arc::default(),
            stop: Arc::default(),
        };
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let (queue, due) = mpsc::channel::<(Instant, bool, Vec<u8>)>();
        let delay = rtt / 2;
        // One reader per side; `to_target` says which way a datagram goes.
        for (socket, to_target, seed) in [
            (&front, true, 0x9e37_79b9_7f4a_7c15u64),
            (&back, false, 0x2545_f491_4f6c_dd1d),
        ] {
            let socket = socket.try_clone().unwrap();
            let (queue, client, stop) = (queue.clone(), client.clone(), link.stop.clone());
            let (dropped, passed) = (link.dropped.clone(), link.passed.clone());
            std::thread::spawn(move || {
                let mut state = seed;
                let mut datagram = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = socket.recv_from(&mut datagram) else {
                        continue;
                    };
                    if to_target {
                        *client.lock().unwrap() = Some(from);
                    }
                    // xorshift64: uniform enough for a drop decision.
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    if (state >> 11) as f64 / (1u64 << 53) as f64 <= loss {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    passed.fetch_add(1, Ordering::Relaxed);
                    let _ = queue.send((Instant::now() + delay, to_target, datagram[..n].to_vec()));
                }
            });
        }
        drop(queue);
        // Every datagram waits the same time, so they leave in the order they came.
        let stop = link.stop.clone();
        std::thread::spawn(move || {
            while let Ok((at, to_target, datagram)) = due.recv() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                if to_target {
                    let _ = back.send_to(&datagram, target);
                } else if let Some(client) = *client.lock().unwrap() {
                    let _ = front.send_to(&datagram, client);
                }
            }
        });
        link
    }
}

impl Drop for LossyLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
