//! SRTP with SDES keys (RFC 3711, RFC 4568) against the real binary on loopback:
//! a caller offering RTP/SAVP with AES_CM_128_HMAC_SHA1_80 (and one with _32)
//! and a plain caller in `demo` hear each other, and what crosses the wire to
//! the SRTP caller holds no tone until decrypted; a room that requires SRTP
//! refuses a plain offer with 488, and `[sip] srtp = "off"` refuses an
//! SRTP-only one.

mod common;

use std::time::Duration;

use caucus::media::srtp::{MasterKey, Srtp, Suite};
use caucus::sdes::Sdes;
use caucus::sdp::CodecKind;
use common::{Bridge, Stream, Ua, db, goertzel};

const ROOMS: &str = "[[room]]\nname = \"demo\"\n[[room]]\nname = \"secure\"\nrequire_srtp = true\n";

/// Call `room` offering SRTP with `suite`: the UA and the session both ways,
/// or the final status when it is not 200.
fn secure_call(bridge: &Bridge, room: &str, suite: Suite, name: &str) -> Result<(Ua, Srtp), u16> {
    let mut ua = Ua::new(bridge.sip, room, CodecKind::Pcmu, false, name);
    ua.profile = "RTP/SAVP";
    let ours = MasterKey::random().unwrap();
    let code = ua.call(&format!(
        "a=crypto:1 {} {}\r\n",
        suite.name(),
        ours.inline()
    ));
    if code != 200 {
        return Err(code);
    }
    let answer = ua.answer.clone().unwrap();
    let m = &answer.media[0];
    assert_eq!(m.proto, "RTP/SAVP");
    let theirs = Sdes::choose(m.crypto.iter().map(String::as_str), MasterKey::random)
        .expect("a=crypto in the answer");
    assert_eq!((theirs.tag, theirs.suite), (1, suite));
    assert_ne!(
        theirs.theirs, ours,
        "the bridge sends under a key of its own"
    );
    Ok((ua, Srtp::new(suite, &ours, &theirs.theirs)))
}

#[test]
fn srtp_callers_and_a_plain_caller_hear_each_other_and_the_wire_holds_no_tone() {
    let bridge = Bridge::start(ROOMS);
    for (suite, name) in [
        (Suite::AesCm128HmacSha1_80, "s80"),
        (Suite::AesCm128HmacSha1_32, "s32"),
    ] {
        let (mut a, srtp) = secure_call(&bridge, "demo", suite, name).expect("an SRTP call");
        let mut b = Ua::new(
            bridge.sip,
            "demo",
            CodecKind::Pcma,
            false,
            &format!("{name}p"),
        );
        assert_eq!(b.call(""), 200);
        let (sa, hb) = std::thread::scope(|s| {
            let ta = s.spawn(|| {
                let mut st = Stream::new(CodecKind::Pcmu);
                st.srtp = Some(srtp);
                st.run(&a, 500.0, Duration::from_secs(3));
                st
            });
            let tb = s.spawn(|| {
                let mut st = Stream::new(CodecKind::Pcma);
                st.run(&b, 900.0, Duration::from_secs(3));
                st.heard
            });
            (ta.join().unwrap(), tb.join().unwrap())
        });
        let tail = |x: &[i16]| x[x.len() - 8000..].to_vec();
        assert!(sa.heard.len() > 16000 && hb.len() > 16000);
        // how far 900 Hz stands above its neighbours: a tone stands far out,
        // in noise (ciphertext played as µ-law) it does not
        let stands_out = |x: &[i16]| {
            let at = |f: f64| db(goertzel(x, 8000.0, f));
            let near = [700.0, 800.0, 1000.0, 1100.0].map(at);
            at(900.0) - near.iter().copied().fold(f64::MIN, f64::max)
        };
        let heard = db(goertzel(&tail(&sa.heard), 8000.0, 900.0));
        let (clear, wire) = (stands_out(&tail(&sa.heard)), stands_out(&tail(&sa.wire)));
        let other = db(goertzel(&tail(&hb), 8000.0, 500.0));
        eprintln!(
            "{suite:?}: SRTP caller hears {heard:.1} dB, {clear:.1} dB above its neighbours \
             (on the wire {wire:.1} dB); plain caller hears {other:.1} dB"
        );
        assert!(heard > 50.0, "the SRTP caller does not hear the other");
        assert!(
            other > 50.0,
            "the plain caller does not hear the SRTP caller"
        );
        // ciphertext is noise: nothing of the tone stands out in it
        assert!(
            clear > 30.0,
            "the tone stands only {clear:.1} dB out once decrypted"
        );
        assert!(
            wire < 10.0,
            "cleartext on the wire: the tone stands {wire:.1} dB out"
        );
        assert_eq!(a.hangup(), 200);
        assert_eq!(b.hangup(), 200);
    }
    // a room that requires SRTP: a plain offer gets 488, an SRTP one is taken
    let mut plain = Ua::new(bridge.sip, "secure", CodecKind::Pcmu, false, "plain");
    assert_eq!(plain.call(""), 488);
    let (mut ok, _) = secure_call(&bridge, "secure", Suite::AesCm128HmacSha1_80, "sec")
        .expect("an SRTP call into the room that requires it");
    assert_eq!(ok.hangup(), 200);
    assert_eq!(bridge.terminate(), Some(0));
}

#[test]
fn srtp_off_refuses_an_srtp_only_offer_and_require_a_plain_one() {
    let off = Bridge::start_with("t1_ms = 100\nsrtp = \"off\"\n", ROOMS);
    let refused = secure_call(&off, "demo", Suite::AesCm128HmacSha1_80, "off").err();
    assert_eq!(refused, Some(488), "an SRTP-only offer with SRTP off");
    assert_eq!(off.terminate(), Some(0));
    let require = Bridge::start_with("t1_ms = 100\nsrtp = \"require\"\n", ROOMS);
    let mut plain = Ua::new(require.sip, "demo", CodecKind::Pcmu, false, "req");
    assert_eq!(plain.call(""), 488);
    let (mut ok, _) = secure_call(&require, "demo", Suite::AesCm128HmacSha1_32, "reqs")
        .expect("an SRTP call with SRTP required");
    assert_eq!(ok.hangup(), 200);
    assert_eq!(require.terminate(), Some(0));
}
