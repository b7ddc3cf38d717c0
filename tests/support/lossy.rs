//! A lossy, delayed UDP link on loopback for the end-to-end tests (this machine's kernel
//! has no `netem`): a relay that drops a share of the datagrams each way at random (seeded,
//! so a run can be repeated), delays the rest by half the round trip, and can black out
//! (drop everything) for a while once a given number of bytes has passed. The same job as
//! `../shared/tools/lossy-udp.py` (which `bench/lossy.sh` uses), in-process, so the tests
//! need nothing outside the repository; unlike it, each client address gets its own
//! port toward the service, so several processes (the remote helper, the filter, the
//! mount) can use one link at once.

use std::collections::HashMap;
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
    /// Bytes passed toward clients and toward the service.
    pub to_clients: Arc<AtomicU64>,
    pub to_service: Arc<AtomicU64>,
    outage: Arc<Mutex<Outage>>,
    stop: Arc<AtomicBool>,
}

/// A planned blackout: everything is dropped for `lasts` once `after` bytes have passed,
/// or once `at` has passed since the first datagram.
#[derive(Default)]
struct Outage {
    after: Option<u64>,
    at: Option<Duration>,
    first: Option<Instant>,
    lasts: Duration,
    started: Option<Instant>,
    /// Bytes passed toward clients when it started.
    to_clients_before: u64,
    to_service_before: u64,
}

/// Where a delayed datagram goes: to the service through a client's own back socket, or
/// to a client through the front socket.
enum Hop {
    ToService(Arc<UdpSocket>),
    ToClient(SocketAddr),
}

/// What every relay thread shares.
#[derive(Clone)]
struct Shared {
    loss: f64,
    delay: Duration,
    queue: mpsc::Sender<(Instant, Hop, Vec<u8>)>,
    dropped: Arc<AtomicU64>,
    passed: Arc<AtomicU64>,
    to_clients: Arc<AtomicU64>,
    to_service: Arc<AtomicU64>,
    outage: Arc<Mutex<Outage>>,
    stop: Arc<AtomicBool>,
}

impl Shared {
    /// Whether the link is blacked out now, starting a planned blackout when its byte
    /// count is reached.
    fn blacked_out(&self) -> bool {
        let mut outage = self.outage.lock().unwrap();
        let moved =
            self.to_clients.load(Ordering::Relaxed) + self.to_service.load(Ordering::Relaxed);
        let first = *outage.first.get_or_insert_with(Instant::now);
        let due = outage.after.is_some_and(|after| moved >= after)
            || outage.at.is_some_and(|at| first.elapsed() >= at);
        if outage.started.is_none() && due {
            outage.started = Some(Instant::now());
            outage.to_clients_before = self.to_clients.load(Ordering::Relaxed);
            outage.to_service_before = self.to_service.load(Ordering::Relaxed);
        }
        let lasts = outage.lasts;
        outage.started.is_some_and(|at| at.elapsed() < lasts)
    }

    /// Reads datagrams from `socket` until the link stops, passing each on (after the
    /// loss draw) to wherever `hop` says.
    fn pump(
        &self,
        socket: &UdpSocket,
        seed: u64,
        mut hop: impl FnMut(SocketAddr) -> Hop,
        counter: &AtomicU64,
    ) {
        let mut state = seed;
        let mut datagram = vec![0u8; 65536];
        while !self.stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = socket.recv_from(&mut datagram) else {
                continue;
            };
            let next = hop(from);
            // xorshift64: uniform enough for a drop decision.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let lost = (state >> 11) as f64 / (1u64 << 53) as f64 <= self.loss;
            if lost || self.blacked_out() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.passed.fetch_add(1, Ordering::Relaxed);
            counter.fetch_add(n as u64, Ordering::Relaxed);
            let _ = self
                .queue
                .send((Instant::now() + self.delay, next, datagram[..n].to_vec()));
        }
    }
}

/// A relay socket on `port` (0: any) of 127.0.0.1. Large buffers, as the Python relay
/// asks for: the kernel's default drops bursts, which would be loss nobody chose.
fn relay_socket(port: u16) -> UdpSocket {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .unwrap();
    let _ = socket.set_recv_buffer_size(8 << 20);
    let _ = socket.set_send_buffer_size(8 << 20);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    socket
        .bind(&addr.into())
        .unwrap_or_else(|e| panic!("relay: binding 127.0.0.1:{port}: {e}"));
    let socket: UdpSocket = socket.into();
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    socket
}

impl LossyLink {
    /// Relays between clients and the UDP service at `target`, dropping `loss` (0..1) of
    /// the datagrams each way and delaying each by `rtt / 2`.
    pub fn start(target: SocketAddr, loss: f64, rtt: Duration) -> LossyLink {
        LossyLink::start_on(0, target, loss, rtt)
    }

    /// [`LossyLink::start`] with clients sending to `port` (0: any free one).
    pub fn start_on(port: u16, target: SocketAddr, loss: f64, rtt: Duration) -> LossyLink {
        let front = Arc::new(relay_socket(port));
        let port = front.local_addr().unwrap().port();
        let (queue, due) = mpsc::channel::<(Instant, Hop, Vec<u8>)>();
        let link = LossyLink {
            port,
            dropped: Arc::default(),
            passed: Arc::default(),
            to_clients: Arc::default(),
            to_service: Arc::default(),
            outage: Arc::default(),
            stop: Arc::default(),
        };
        let shared = Shared {
            loss,
            delay: rtt / 2,
            queue,
            dropped: link.dropped.clone(),
            passed: link.passed.clone(),
            to_clients: link.to_clients.clone(),
            to_service: link.to_service.clone(),
            outage: link.outage.clone(),
            stop: link.stop.clone(),
        };
        // The front reader: each new client address gets a back socket of its own, and a
        // reader on it that passes the service's answers back to that client.
        {
            let (shared, front) = (shared.clone(), front.clone());
            std::thread::spawn(move || {
                let mut backs: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
                let mut seed = 0x9e37_79b9_7f4a_7c15u64;
                let counter = shared.to_service.clone();
                shared.pump(
                    &front,
                    0x2545_f491_4f6c_dd1d,
                    |client| {
                        let back = backs.entry(client).or_insert_with(|| {
                            let back = Arc::new(relay_socket(0));
                            let (shared, reader) = (shared.clone(), back.clone());
                            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                            let seed = seed | 1;
                            std::thread::spawn(move || {
                                let counter = shared.to_clients.clone();
                                shared.pump(&reader, seed, |_| Hop::ToClient(client), &counter);
                            });
                            back
                        });
                        Hop::ToService(back.clone())
                    },
                    &counter,
                );
            });
        }
        drop(shared);
        // Every datagram waits the same time, so they leave in the order they came.
        let stop = link.stop.clone();
        std::thread::spawn(move || {
            while let Ok((at, hop, datagram)) = due.recv() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                let _ = match hop {
                    Hop::ToService(back) => back.send_to(&datagram, target),
                    Hop::ToClient(client) => front.send_to(&datagram, client),
                };
            }
        });
        link
    }

    /// Drops everything, both ways, for `lasts` once `bytes` have passed in all (both
    /// ways, counted from the start).
    pub fn black_out_after(&self, bytes: u64, lasts: Duration) {
        let mut outage = self.outage.lock().unwrap();
        outage.after = Some(bytes);
        outage.lasts = lasts;
    }

    /// Drops everything, both ways, for `lasts` from `at` after the first datagram.
    pub fn black_out_at(&self, at: Duration, lasts: Duration) {
        let mut outage = self.outage.lock().unwrap();
        outage.at = Some(at);
        outage.lasts = lasts;
    }

    /// Bytes that had passed toward clients and toward the service when the blackout
    /// began; `None` while it has not.
    pub fn passed_before_outage(&self) -> Option<(u64, u64)> {
        let outage = self.outage.lock().unwrap();
        outage
            .started
            .map(|_| (outage.to_clients_before, outage.to_service_before))
    }

    /// Whether a blackout has begun and is over.
    pub fn outage_over(&self) -> bool {
        let outage = self.outage.lock().unwrap();
        outage
            .started
            .is_some_and(|at| at.elapsed() >= outage.lasts)
    }
}

impl Drop for LossyLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
