//! Microbenchmarks (criterion): one room tick for 10/100/1,000 legs with real
//! loopback sockets, the pure mixing arithmetic, G.711 encode/decode, parsing an
//! INVITE, Opus and G.722 encode/decode of one 20 ms frame, SRTP protect and
//! unprotect of one 20 ms PCMU packet, a talker's noise suppression and
//! levelling and the mix's limiter per 20 ms. `cargo bench --bench micro`; under
//! `cargo test` each runs once as a smoke test.

use std::hint::black_box;
use std::net::UdpSocket;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use caucus::core::LegId;
use caucus::media::contract::MediaParams;
use caucus::media::room::{RoomMedia, Scratch};
use caucus::media::transport::{Bound, RtpUdp, Transport};
use caucus::media::{g711, mixer, opus, rtp};
use caucus::sdp::{CodecKind, Direction};
use caucus::sip::Message;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

fn invite() -> Vec<u8> {
    let sdp = "v=0\r\no=alice 2890844526 2890844526 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    format!(
        "INVITE sip:demo@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:demo@127.0.0.1>\r\n\
From: \"Alice\" <sip:alice@127.0.0.1>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@127.0.0.1\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@127.0.0.1:5070>\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
    .into_bytes()
}

fn tone(freq: f64, n: usize, rate: f64) -> Vec<i16> {
    (0..n)
        .map(|i| (6000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / rate).sin()) as i16)
        .collect()
}

/// A room of `n` PCMU legs, 4 talking, fed one packet per leg before each tick; the
/// bridge's sends go to one sink socket that is drained outside the timed part.
fn room_tick(c: &mut Criterion) {
    let mut g = c.benchmark_group("room_tick_pcmu");
    for &n in &[10usize, 100, 1000] {
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        sink.set_nonblocking(true).unwrap();
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&sink, 4 << 20);
        let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
        let _ = rustix::net::sockopt::set_socket_send_buffer_size(&phone, 4 << 20);
        let mut room = RoomMedia::new(4);
        let mut targets = Vec::new();
        for i in 0..n {
            let rtp_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            let rtcp_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            rtp_sock.set_nonblocking(true).unwrap();
            rtcp_sock.set_nonblocking(true).unwrap();
            targets.push(rtp_sock.local_addr().unwrap());
            let params = MediaParams {
                codec: CodecKind::Pcmu,
                pt: 0,
                dtmf_pt: Some(101), // phones offer telephone-event: no in-band detection
                peer_direction: Direction::SendRecv,
                ssrc: i as u32,
                ptime_ms: 20,
            };
            let bound = Bound::new(rtp_sock, rtcp_sock).unwrap();
            let now = Instant::now();
            let rtp = RtpUdp::new(bound, Some(sink.local_addr().unwrap()), None, now);
            room.add_leg(LegId(i as u64 + 1), Transport::Rtp(rtp), params, now)
                .unwrap();
        }
        let talk: Vec<u8> = {
            let mut out = vec![0u8; 160];
            g711::encode_ulaw(&tone(440.0, 160, 8000.0), &mut out);
            out
        };
        let (tx, _rx) = mpsc::channel();
        let mut buf = vec![0u8; 2048];
        let mut scratch = Scratch::default();
        let mut pkt = vec![0u8; 172];
        let mut seq = 0u16;
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    for (i, t) in targets.iter().enumerate() {
                        rtp::write_header(
                            &mut pkt,
                            0,
                            false,
                            seq,
                            u32::from(seq) * 160,
                            9000 + i as u32,
                        );
                        if i < 4 {
                            pkt[12..].copy_from_slice(&talk);
                        } else {
                            pkt[12..].fill(0xff);
                        }
                        phone.send_to(&pkt, t).unwrap();
                    }
                    seq = seq.wrapping_add(1);
                    let start = Instant::now();
                    room.tick(start, &mut scratch, &tx);
                    total += start.elapsed();
                    while sink.recv_from(&mut buf).is_ok() {}
                }
                total
            })
        });
    }
    g.finish();
}

/// The arithmetic alone: 1,000 frames, 4 talkers, each talker's mix-minus plus one
/// shared mix, 8 kHz.
fn mix_arithmetic(c: &mut Criterion) {
    let frames: Vec<Vec<i16>> = (0..4)
        .map(|k| tone(300.0 + 200.0 * k as f64, 160, 8000.0))
        .collect();
    let mut acc = vec![0i32; 160];
    let mut out = vec![0i16; 160];
    c.bench_function("mix_4_talkers_160_samples", |b| {
        b.iter(|| {
            acc.fill(0);
            for f in &frames {
                mixer::accumulate(&mut acc, f);
            }
            for f in &frames {
                mixer::mix_minus(&acc, Some(f), &mut out);
                black_box(&out);
            }
            mixer::mix_minus(&acc, None, &mut out);
            black_box(&out);
        })
    });
}

fn g711_codec(c: &mut Criterion) {
    g711::init();
    let pcm = tone(440.0, 160, 8000.0);
    let mut enc = vec![0u8; 160];
    let mut dec = vec![0i16; 160];
    c.bench_function("g711_ulaw_encode_160", |b| {
        b.iter(|| g711::encode_ulaw(black_box(&pcm), &mut enc))
    });
    c.bench_function("g711_ulaw_decode_160", |b| {
        b.iter(|| g711::decode_ulaw(black_box(&enc), &mut dec))
    });
    c.bench_function("g711_alaw_encode_160", |b| {
        b.iter(|| g711::encode_alaw(black_box(&pcm), &mut enc))
    });
}

fn sip_parse(c: &mut Criterion) {
    let msg = invite();
    c.bench_function("sip_parse_invite", |b| {
        b.iter(|| Message::parse(black_box(&msg)).unwrap())
    });
}

fn opus_codec(c: &mut Criterion) {
    let pcm = tone(440.0, 960, 48000.0);
    let mut enc = opus::Encoder::new(5).unwrap();
    let mut dec = opus::Decoder::new().unwrap();
    let mut pkt = vec![0u8; 1500];
    let mut out = vec![0i16; 960];
    let n = enc.encode(&pcm, &mut pkt).unwrap();
    c.bench_function("opus_encode_20ms_48k_c5", |b| {
        b.iter(|| enc.encode(black_box(&pcm), &mut pkt).unwrap())
    });
    c.bench_function("opus_decode_20ms_48k", |b| {
        b.iter(|| dec.decode(Some(black_box(&pkt[..n])), &mut out).unwrap())
    });
}

fn g722_codec(c: &mut Criterion) {
    use caucus::media::codec::{Decoder, Encoder};
    let pcm = tone(6000.0, 320, 16000.0);
    let mut enc = Encoder::new(CodecKind::G722).unwrap();
    let mut dec = Decoder::new(CodecKind::G722).unwrap();
    let mut pkt = vec![0u8; 400];
    let mut out = vec![0i16; 960];
    let n = enc.encode(&pcm, &mut pkt);
    c.bench_function("g722_encode_20ms_16k", |b| {
        b.iter(|| enc.encode(black_box(&pcm), &mut pkt))
    });
    c.bench_function("g722_decode_20ms_16k", |b| {
        b.iter(|| dec.decode(black_box(&pkt[..n]), &mut out))
    });
}

fn srtp(c: &mut Criterion) {
    use caucus::media::srtp::{MasterKey, Srtp, Suite};
    let (a, b) = (MasterKey::random().unwrap(), MasterKey::random().unwrap());
    let mut tx = Srtp::new(Suite::AesCm128HmacSha1_80, &a, &b);
    let mut rx = Srtp::new(Suite::AesCm128HmacSha1_80, &b, &a);
    let mut pkt = [0u8; 1500];
    let mut seq = 0u16;
    c.bench_function("srtp_protect_pcmu_20ms", |bench| {
        bench.iter(|| {
            rtp::write_header(&mut pkt, 0, false, seq, u32::from(seq) * 160, 7);
            seq = seq.wrapping_add(1);
            tx.protect(black_box(&mut pkt), 172)
        })
    });
    // unprotect needs fresh packets (a replay is refused): protected outside
    // the measurement by a sender of their own
    let mut tx = Srtp::new(Suite::AesCm128HmacSha1_80, &a, &b);
    let mut seq = 0u16;
    c.bench_function("srtp_unprotect_pcmu_20ms", |bench| {
        bench.iter_batched(
            || {
                let mut p = [0u8; 200];
                rtp::write_header(&mut p, 0, false, seq, u32::from(seq) * 160, 7);
                seq = seq.wrapping_add(1);
                let n = tx.protect(&mut p, 172);
                (p, n)
            },
            |(mut p, n)| assert!(rx.unprotect(black_box(&mut p[..n])).is_ok()),
            criterion::BatchSize::SmallInput,
        )
    });
}

/// The voice treatment of one mixed talker per 20 ms tick: RNNoise at each
/// room rate (8 and 16 kHz through the conversion to 48 kHz and back), the
/// leveller, and the limiter's pass over a sum.
fn treatment(c: &mut Criterion) {
    use caucus::media::denoise::Denoiser;
    use caucus::media::level::{Leveller, Limiter};
    for rate in [8000u32, 16000, 48000] {
        let n = rate as usize / 50;
        let pcm = tone(440.0, n, f64::from(rate));
        let mut d = Denoiser::default();
        let mut frame = pcm.clone();
        let mut tick = 0u64;
        c.bench_function(&format!("denoise_20ms_{}k", rate / 1000), |b| {
            b.iter(|| {
                frame.copy_from_slice(&pcm);
                tick += 1;
                d.process(black_box(&mut frame), tick)
            })
        });
    }
    let pcm = tone(440.0, 160, 8000.0);
    let mut l = Leveller::default();
    let mut frame = pcm.clone();
    c.bench_function("level_20ms_8k", |b| {
        b.iter(|| {
            frame.copy_from_slice(&pcm);
            l.process(black_box(&mut frame), 8000)
        })
    });
    let acc: Vec<i32> = (0..960).map(|i| (i % 200) * 300).collect();
    let mut lim = Limiter::default();
    let mut out = vec![0i16; 960];
    c.bench_function("limit_mix_20ms_48k", |b| {
        b.iter(|| {
            lim.follow(black_box(&acc), true);
            lim.mix_minus(&acc, None, &mut out)
        })
    });
}

criterion_group!(
    benches,
    room_tick,
    mix_arithmetic,
    g711_codec,
    sip_parse,
    opus_codec,
    g722_codec,
    srtp,
    treatment
);
criterion_main!(benches);
