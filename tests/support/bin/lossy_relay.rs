//! `lossy-relay LISTEN_PORT TARGET_PORT LOSS DELAY_MS [BLACKOUT_AT_S BLACKOUT_S]`: the
//! end-to-end tests' [`LossyLink`] as a program, with the arguments of
//! `../shared/tools/lossy-udp.py` (BLACKOUT_AT_S may also be `NNNb`: once NNN bytes
//! have passed), for `bench/lossy.sh`. The Python relay tops out near
//! 20–38 MB/s on this machine, so it, not the transfer, set the loss-free baseline.
//! Runs until killed; prints every second the bytes it passed each way (datagram
//! payloads: what QUIC put on the wire, headers and retransmissions included) and the
//! datagrams it dropped and passed.

use std::time::Duration;

use dits_tests::lossy::LossyLink;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, what: &str| -> f64 {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| {
                eprintln!("usage: lossy-relay LISTEN_PORT TARGET_PORT LOSS DELAY_MS [BLACKOUT_AT_S BLACKOUT_S] ({what})");
                std::process::exit(2)
            })
    };
    let listen = number(0, "listen port") as u16;
    let target = number(1, "target port") as u16;
    let loss = number(2, "loss");
    let delay = Duration::from_secs_f64(number(3, "delay") / 1000.0);
    let link = LossyLink::start_on(listen, ([127, 0, 0, 1], target).into(), loss, delay * 2);
    if args.len() > 4 {
        let lasts = Duration::from_secs_f64(number(5, "blackout length"));
        // `NNNb`: once NNN bytes have passed (both ways), rather than at a time.
        match args[4].strip_suffix('b').map(str::parse::<u64>) {
            Some(Ok(bytes)) => link.black_out_after(bytes, lasts),
            _ => link.black_out_at(Duration::from_secs_f64(number(4, "blackout start")), lasts),
        }
    }
    use std::sync::atomic::Ordering::Relaxed;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        eprintln!(
            "lossy-relay: to_clients {} to_service {} dropped {} passed {}",
            link.to_clients.load(Relaxed),
            link.to_service.load(Relaxed),
            link.dropped.load(Relaxed),
            link.passed.load(Relaxed)
        );
    }
}
