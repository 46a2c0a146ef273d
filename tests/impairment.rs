//! 1,000 SIPp calls through a user-space impairment relay (5 % loss, 5 %
//! duplication, 5 % reordering and up to 20 ms jitter, both ways, on SIP and RTP):
//! at least 99.5 % complete, and a caller in the same room still hears the SIPp
//! callers' tone that crossed the relay. Loopback only.

mod common;

use std::process::Command;
use std::time::Duration;

use caucus::sdp::CodecKind;
use common::relay::{Impair, Relay};
use common::{Bridge, Stream, Ua, db, free_port, goertzel};

#[test]
fn a_thousand_calls_through_loss_duplication_reordering_and_jitter() {
    if std::env::var_os("CAUCUS_SKIP_SIPP").is_some() {
        return;
    }
    caucus::driver::raise_fd_limit();
    // ringing 300 ms before the answer: a 100 Trying held back by reordering still
    // arrives before the 200, as it would on a real network with answer delay
    let bridge = Bridge::start_full(
        "t1_ms = 500\n",
        "port_min = 12000\nport_max = 12799\ntimeout_s = 20\n",
        "[[room]]\nname = \"demo\"\nmax_participants = 10000\nanswer_after_ms = 300\n",
    );
    let relay = Relay::start(
        bridge.sip,
        Impair {
            loss: 0.05,
            dup: 0.05,
            reorder: 0.05,
            jitter: Duration::from_millis(20),
            seed: 4475,
        },
    );
    // a listener straight on the bridge (not impaired) hears what crossed the relay
    let mut listener = Ua::new(bridge.sip, "demo", CodecKind::Pcmu, false, "ear");
    assert_eq!(listener.call(""), 200);
    let dir = std::env::temp_dir().join(format!("caucus-impair-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let scenarios = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp-scenarios");
    for f in ["uac_tone.xml", "tone440.wav"] {
        std::fs::copy(scenarios.join(f), dir.join(f)).unwrap();
    }
    let sip_port = free_port();
    let media_port = 14000 + (std::process::id() % 500) as u16 * 2;
    let mut sipp = Command::new("sipp")
        .current_dir(&dir)
        .args([
            &relay.addr.to_string(),
            "-sf",
            "uac_tone.xml",
            "-s",
            "demo",
            "-i",
            "127.0.0.1",
            "-p",
            &sip_port.to_string(),
            "-mi",
            "127.0.0.1",
            "-mp",
            &media_port.to_string(),
            "-r",
            "20",
            "-m",
            "1000",
            "-l",
            "200",
            "-timeout",
            "150s",
            "-nostdin",
            "-trace_stat",
            "-fd",
            "1",
            "-stf",
            "stat.csv",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sipp (Debian package sip-tester)");
    // listen for a while in the middle of the run
    std::thread::sleep(Duration::from_secs(10));
    let mut st = Stream::new(CodecKind::Pcmu);
    st.run(&listener, 1000.0, Duration::from_secs(4));
    let heard = &st.heard[st.heard.len().saturating_sub(16000)..];
    let tone = db(goertzel(heard, 8000.0, 440.0));
    let status = sipp.wait().unwrap();
    let ok = common::sipp_stat(&dir.join("stat.csv"), "SuccessfulCall(C)");
    let failed = common::sipp_stat(&dir.join("stat.csv"), "FailedCall(C)");
    let s = &relay.stats;
    eprintln!(
        "calls: {ok} ok, {failed} failed (sipp {status:?}); relay: {} forwarded, {} dropped, {} duplicated, {} reordered; 440 Hz heard at {tone:.1} dB",
        s.forwarded.load(std::sync::atomic::Ordering::Relaxed),
        s.dropped.load(std::sync::atomic::Ordering::Relaxed),
        s.duplicated.load(std::sync::atomic::Ordering::Relaxed),
        s.reordered.load(std::sync::atomic::Ordering::Relaxed),
    );
    assert!(
        ok >= 995,
        "only {ok} of 1000 calls completed ({failed} failed)"
    );
    assert!(
        tone > 40.0,
        "the SIPp callers' tone is not heard ({tone:.1} dB)"
    );
    let _ = listener.hangup();
}
