//! The signalling core fed an arbitrary sequence of inputs: datagrams and TCP
//! frames from a few peers, time passing, DTMF, prompt ends, media failures, RTP
//! timeouts; the driver's binds of RTP ports fail for one port in seven. No panic,
//! and its state stays bounded and consistent: every leg holds exactly one RTP
//! port, and once time has run far enough with no input, every leg and
//! transaction is gone.
#![no_main]

use std::time::{Duration, Instant};

use caucus::config::Config;
use caucus::core::{Core, LegId, Output, Peer, Transport};
use caucus::media::contract::MediaCommand;
use libfuzzer_sys::fuzz_target;

/// Carry out the core's outputs as a driver would: answer each bind of an RTP port
/// (ports divisible by seven are held by another program).
fn drain(core: &mut Core, now: Instant) {
    while let Some(o) = core.poll_output() {
        if let Output::Media(MediaCommand::Bind { leg, addr }) = o {
            core.media_bound(now, leg, addr.port() % 7 != 0);
        }
    }
}

const CONFIG: &str = "[sip]\nlisten = \"127.0.0.1:5060\"\n[rtp]\nport_min = 20000\nport_max = 20099\n\
[[room]]\nname = \"demo\"\nmax_participants = 5\n\
[[room]]\nname = \"pin\"\npin = \"1234\"\nmoderator_pin = \"99\"\nmoderated = true\n";

fuzz_target!(|data: &[u8]| {
    let cfg = Config::parse(CONFIG, "fuzz.toml").expect("fuzz config");
    let mut core = Core::new(cfg.core(), 1);
    let t0 = Instant::now();
    let mut now = t0;
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        let peer = Peer {
            transport: if op & 0x10 != 0 {
                Transport::Tcp(u64::from(op & 3))
            } else {
                Transport::Udp
            },
            addr: std::net::SocketAddr::from(([127, 0, 0, 1 + (op & 3)], 5070)),
            local: std::net::SocketAddr::from(([127, 0, 0, 1], 5060)),
        };
        match op >> 5 {
            0 | 1 | 2 => {
                let (len, tail) = match rest.split_first() {
                    Some((&l, t)) => (usize::from(l) * 8, t),
                    None => break,
                };
                let n = len.min(tail.len());
                core.handle_message(now, peer, &tail[..n]);
                rest = &tail[n..];
            }
            3 => {
                now += Duration::from_millis(u64::from(op & 0x1f) * 250);
                core.handle_timeout(now);
            }
            4 => {
                let digit = b"0123456789*#"[usize::from(op & 0x0f) % 12] as char;
                core.dtmf(now, LegId(u64::from(op & 3) + 1), digit);
            }
            5 => core.prompt_done(now, LegId(u64::from(op & 7) + 1)),
            6 => core.rtp_timeout(now, LegId(u64::from(op & 7) + 1)),
            _ => core.media_failed(now, LegId(u64::from(op & 7) + 1)),
        }
        drain(&mut core, now);
        assert_eq!(
            core.ports_in_use(),
            core.leg_count(),
            "a port without a leg, or a leg without one"
        );
    }
    // an hour later, with nobody answering anything, nothing is left
    for _ in 0..200 {
        now += Duration::from_secs(20);
        core.handle_timeout(now);
        drain(&mut core, now);
    }
    core.shutdown(now);
    drain(&mut core, now);
    for _ in 0..10 {
        now += Duration::from_secs(40);
        core.handle_timeout(now);
        drain(&mut core, now);
    }
    assert_eq!(core.leg_count(), 0);
    assert!(core.is_idle(), "transactions left after an hour");
});
