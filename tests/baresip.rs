//! Interop with baresip (Debian's baresip-core, built on the system libopus): an Opus
//! caller, a PCMU caller, a G.722 caller, a PCMA caller over TLS (verifying the
//! bridge's certificate) and a PCMU caller on SRTP (SDES, `srtp-mand`) dial the
//! real binary, each playing its own
//! tone from a WAV file; baresip's sndfile module records what each decodes, and a
//! Goertzel detector checks that each hears the others and not itself. This is also
//! the interop test of our Opus (unsafe-libopus) against libopus and of our G.722
//! against baresip's (spandsp's algorithm). CAUCUS_SKIP_BARESIP=1 skips it.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Bridge, db, free_port, goertzel};

/// First channel of a 16-bit PCM WAV, and its rate.
fn read_wav(path: &Path) -> (Vec<i16>, u32) {
    let b = std::fs::read(path).unwrap();
    let (mut rate, mut channels, mut pos) = (0u32, 1usize, 12usize);
    while pos + 8 <= b.len() {
        let id = &b[pos..pos + 4];
        let len = u32::from_le_bytes(b[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let body = &b[pos + 8..(pos + 8 + len).min(b.len())];
        if id == b"fmt " {
            channels = usize::from(u16::from_le_bytes([body[2], body[3]]));
            rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
        } else if id == b"data" {
            let samples = body
                .chunks_exact(2 * channels)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return (samples, rate);
        }
        pos += 8 + len + (len & 1);
    }
    (Vec::new(), rate)
}

#[test]
fn baresip_opus_pcmu_g722_tls_and_srtp_callers_hear_each_other() {
    if std::env::var_os("CAUCUS_SKIP_BARESIP").is_some() {
        return;
    }
    assert!(
        Command::new("baresip").arg("-h").output().is_ok(),
        "baresip not found: run the README's test command (it installs baresip-core) or set CAUCUS_SKIP_BARESIP=1"
    );
    let base = std::env::temp_dir().join(format!("caucus-baresip-{}", std::process::id()));
    let (cert, key, _) = common::test_certificate(&base.join("tls"));
    // baresip reads its own certificate and key from one file
    let combined = base.join("tls/combined.pem");
    std::fs::write(
        &combined,
        std::fs::read_to_string(&cert).unwrap() + &std::fs::read_to_string(&key).unwrap(),
    )
    .unwrap();
    let tls_port = free_port();
    // five talkers: all of them mixed (the default mixes the loudest four)
    let bridge = Bridge::start_full(
        &format!(
            "t1_ms = 100\ntls_listen = \"127.0.0.1:{tls_port}\"\ntls_certificate = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        ),
        "max_talkers = 5\n",
        "[[room]]\nname = \"demo\"\n",
    );
    // (codec, its rate, channels, tone, over TLS, SRTP)
    let callers = [
        ("opus/48000/2", 48000u32, 2u16, 440.0, false, false),
        ("PCMU/8000", 8000, 1, 700.0, false, false),
        ("G722/16000/1", 16000, 1, 1000.0, false, false),
        ("PCMA/8000", 8000, 1, 1300.0, true, false),
        ("PCMU/8000", 8000, 1, 1700.0, false, true),
    ];
    let mut children = Vec::new();
    let mut dirs = Vec::new();
    for (i, (codec, rate, ch, freq, tls, srtp)) in callers.iter().enumerate() {
        let dir = base.join(format!("ua{i}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let tone = dir.join("tone.wav");
        common::write_wav(&tone, *rate, *ch, *freq, 20.0);
        let port = free_port();
        std::fs::write(
            dir.join("config"),
            format!(
                "poll_method epoll\nsip_listen 127.0.0.1:{port}\naudio_player aufile,/dev/null\naudio_source aufile,{}\naudio_alert aufile,/dev/null\n\
module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule g722.so\nmodule opus.so\nmodule srtp.so\nmodule aufile.so\nmodule sndfile.so\nmodule account.so\nmodule menu.so\nsnd_path {}\n\
sip_cafile {}\nsip_certificate {}\nsip_verify_server yes\n",
                tone.display(),
                dir.display(),
                cert.display(),
                combined.display()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:ua{i}@127.0.0.1:{port}{}>;regint=0;audio_codecs={codec}{}\n",
                if *tls { ";transport=tls" } else { "" },
                if *srtp { ";mediaenc=srtp-mand" } else { "" }
            ),
        )
        .unwrap();
        let target = if *tls {
            format!("/dial sip:demo@127.0.0.1:{tls_port};transport=tls")
        } else {
            format!("/dial sip:demo@{}", bridge.sip)
        };
        let child = Command::new("baresip")
            .current_dir(&dir)
            .arg("-f")
            .arg(&dir)
            .args(["-e", &target, "-t", "6"])
            .stdout(std::fs::File::create(dir.join("out.log")).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        children.push(child);
        dirs.push(dir);
    }
    for mut c in children {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while c.try_wait().unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "baresip did not finish"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    for (i, dir) in dirs.iter().enumerate() {
        let dec = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .unwrap_or_else(|| {
                panic!(
                    "baresip {i} recorded nothing; see {}",
                    dir.join("out.log").display()
                )
            });
        let (x, rate) = read_wav(&dec);
        assert!(
            x.len() > rate as usize * 3,
            "baresip {i}: only {} samples",
            x.len()
        );
        let tail = &x[x.len() - 2 * rate as usize..];
        let own = db(goertzel(tail, f64::from(rate), callers[i].3));
        for (j, other) in callers.iter().enumerate().filter(|(j, _)| *j != i) {
            let other = db(goertzel(tail, f64::from(rate), other.3));
            eprintln!(
                "baresip {i} ({}): caller {j} {other:.1} dB, own {own:.1} dB",
                callers[i].0
            );
            assert!(
                other > 50.0,
                "baresip {i} does not hear caller {j} ({other:.1} dB)"
            );
            assert!(
                other - own >= 30.0,
                "baresip {i} hears itself ({own:.1} dB vs {other:.1} dB)"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&base);
    assert_eq!(bridge.terminate(), Some(0));
}
