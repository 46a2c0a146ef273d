//! A user-space network impairment relay for SIP and RTP on loopback (the kernel
//! here has no netem): clients send SIP to the relay, which forwards it to the
//! bridge and back, and rewrites each SDP so that the call's RTP flows through a
//! pair of relay sockets too. Every datagram in either direction may be lost,
//! duplicated, delayed (jitter) or held back long enough to be overtaken
//! (reordering), from a seeded generator. Loopback only: it forwards to the bridge
//! address it was given and to the addresses its clients sent from or declared.
//! A call's relay sockets live as long as the relay (a test's worth of calls).
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;

/// How bad the network is.
#[derive(Debug, Clone, Copy)]
pub struct Impair {
    /// chance a datagram is dropped
    pub loss: f64,
    /// chance it is sent twice
    pub dup: f64,
    /// chance it is held back 30-80 ms (later ones overtake it)
    pub reorder: f64,
    /// uniform extra delay up to this
    pub jitter: Duration,
    /// PRNG seed
    pub seed: u64,
}

/// Counters.
#[derive(Debug, Default)]
pub struct RelayStats {
    pub forwarded: AtomicU64,
    pub dropped: AtomicU64,
    pub duplicated: AtomicU64,
    pub reordered: AtomicU64,
}

struct Rng(Mutex<u64>);

impl Rng {
    fn next(&self) -> f64 {
        let mut s = self.0.lock().unwrap();
        *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Shared {
    imp: Impair,
    rng: Rng,
    stats: Arc<RelayStats>,
}

impl Shared {
    /// Send `data` from `sock` to `to`, impaired.
    fn send(self: &Arc<Self>, sock: &Arc<UdpSocket>, data: Vec<u8>, to: SocketAddr) {
        if self.rng.next() < self.imp.loss {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let copies = if self.rng.next() < self.imp.dup {
            self.stats.duplicated.fetch_add(1, Ordering::Relaxed);
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut delay = self.imp.jitter.mul_f64(self.rng.next());
            if self.rng.next() < self.imp.reorder {
                self.stats.reordered.fetch_add(1, Ordering::Relaxed);
                delay += Duration::from_millis(30 + (self.rng.next() * 50.0) as u64);
            }
            let (sock, data, stats) = (sock.clone(), data.clone(), self.stats.clone());
            tokio::spawn(async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if sock.send_to(&data, to).await.is_ok() {
                    stats.forwarded.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    }
}

/// One call's media path: `to_bridge` faces the bridge, `to_client` the client.
struct MediaPair {
    to_bridge: Arc<UdpSocket>,
    to_client: Arc<UdpSocket>,
    bridge_media: Arc<Mutex<Option<SocketAddr>>>,
    client_media: Arc<Mutex<Option<SocketAddr>>>,
}

/// Calls by Call-ID: the client's signalling address and the media pair.
type Calls = Arc<Mutex<HashMap<String, (SocketAddr, Arc<MediaPair>)>>>;

/// A running relay; dropping it stops it.
pub struct Relay {
    /// where clients send SIP
    pub addr: SocketAddr,
    pub stats: Arc<RelayStats>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn header<'a>(msg: &'a str, name: &str, compact: &str) -> Option<&'a str> {
    msg.split("\r\n").find_map(|l| {
        let (n, v) = l.split_once(':')?;
        let n = n.trim();
        (n.eq_ignore_ascii_case(name) || n.eq_ignore_ascii_case(compact)).then(|| v.trim())
    })
}

/// Replace the SDP's media address with `port` on 127.0.0.1; returns the new
/// message and the address the SDP had declared.
fn rewrite_sdp(msg: &str, port: u16) -> Option<(String, SocketAddr)> {
    let (head, body) = msg.split_once("\r\n\r\n")?;
    if !body.contains("m=audio ") {
        return None;
    }
    let mut ip = None;
    let mut old_port = None;
    let mut lines = Vec::new();
    for l in body.split("\r\n") {
        if let Some(rest) = l.strip_prefix("c=IN IP4 ") {
            ip = rest.trim().parse::<std::net::IpAddr>().ok();
            lines.push("c=IN IP4 127.0.0.1".to_string());
        } else if let Some(rest) = l.strip_prefix("m=audio ") {
            let (p, tail) = rest.split_once(' ')?;
            old_port = p.parse::<u16>().ok();
            lines.push(format!("m=audio {port} {tail}"));
        } else {
            lines.push(l.to_string());
        }
    }
    let declared = SocketAddr::new(ip?, old_port?);
    let body = lines.join("\r\n");
    let head: Vec<String> = head
        .split("\r\n")
        .map(|l| {
            let name = l.split(':').next().unwrap_or("").trim();
            if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
                format!("Content-Length: {}", body.len())
            } else {
                l.to_string()
            }
        })
        .collect();
    Some((format!("{}\r\n\r\n{body}", head.join("\r\n")), declared))
}

impl Relay {
    /// Relay SIP (and the RTP its SDP describes) between clients and `bridge`.
    pub fn start(bridge: SocketAddr, imp: Impair) -> Relay {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let stats = Arc::new(RelayStats::default());
        let shared = Arc::new(Shared {
            imp,
            rng: Rng(Mutex::new(imp.seed)),
            stats: stats.clone(),
        });
        let (client_side, bridge_side) = rt.block_on(async {
            (
                Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap()),
                Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap()),
            )
        });
        let addr = client_side.local_addr().unwrap();
        let calls: Calls = Arc::new(Mutex::new(HashMap::new()));
        // clients -> bridge
        {
            let (cs, bs, shared, calls) = (
                client_side.clone(),
                bridge_side.clone(),
                shared.clone(),
                calls.clone(),
            );
            rt.spawn(async move {
                let mut buf = vec![0u8; 65536];
                loop {
                    let Ok((n, from)) = cs.recv_from(&mut buf).await else {
                        continue;
                    };
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let Some(call_id) = header(&text, "Call-ID", "i").map(str::to_string) else {
                        continue;
                    };
                    let pair = media_pair(&calls, &call_id, from, &shared).await;
                    let port = pair.to_bridge.local_addr().unwrap().port();
                    let out = match rewrite_sdp(&text, port) {
                        Some((m, declared)) => {
                            *pair.client_media.lock().unwrap() = Some(declared);
                            m
                        }
                        None => text,
                    };
                    shared.send(&bs, out.into_bytes(), bridge);
                }
            });
        }
        // bridge -> clients
        {
            let (cs, bs, shared, calls) = (
                client_side.clone(),
                bridge_side.clone(),
                shared.clone(),
                calls.clone(),
            );
            rt.spawn(async move {
                let mut buf = vec![0u8; 65536];
                loop {
                    let Ok((n, _)) = bs.recv_from(&mut buf).await else {
                        continue;
                    };
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let Some(call_id) = header(&text, "Call-ID", "i") else {
                        continue;
                    };
                    let Some((client, pair)) = calls.lock().unwrap().get(call_id).cloned() else {
                        continue;
                    };
                    let port = pair.to_client.local_addr().unwrap().port();
                    let out = match rewrite_sdp(&text, port) {
                        Some((m, declared)) => {
                            *pair.bridge_media.lock().unwrap() = Some(declared);
                            m
                        }
                        None => text,
                    };
                    shared.send(&cs, out.into_bytes(), client);
                }
            });
        }
        Relay {
            addr,
            stats,
            rt: Some(rt),
        }
    }
}

/// The call's media pair, made (and its forwarding started) on first sight.
async fn media_pair(
    calls: &Calls,
    call_id: &str,
    client: SocketAddr,
    shared: &Arc<Shared>,
) -> Arc<MediaPair> {
    if let Some((_, p)) = calls.lock().unwrap().get(call_id) {
        return p.clone();
    }
    let pair = Arc::new(MediaPair {
        to_bridge: Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap()),
        to_client: Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap()),
        bridge_media: Arc::new(Mutex::new(None)),
        client_media: Arc::new(Mutex::new(None)),
    });
    calls
        .lock()
        .unwrap()
        .insert(call_id.to_string(), (client, pair.clone()));
    // bridge -> client media, and client -> bridge media
    for toward_client in [true, false] {
        let (rx, tx, dest, shared) = if toward_client {
            (
                pair.to_bridge.clone(),
                pair.to_client.clone(),
                pair.client_media.clone(),
                shared.clone(),
            )
        } else {
            (
                pair.to_client.clone(),
                pair.to_bridge.clone(),
                pair.bridge_media.clone(),
                shared.clone(),
            )
        };
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            // a call's media lives for the test's calls; idle for 20 s ends it
            while let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_secs(20), rx.recv_from(&mut buf)).await
            {
                let to = *dest.lock().unwrap();
                if let Some(to) = to {
                    shared.send(&tx, buf[..n].to_vec(), to);
                }
            }
        });
    }
    pair
}
