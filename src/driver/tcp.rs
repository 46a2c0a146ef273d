//! SIP over TCP (RFC 3261 §18.3) and over TLS (§26.2, the same framing inside the
//! TLS stream): the acceptor and one task per connection, framing the byte stream
//! into messages for the driver. Guards against connection
//! exhaustion (AST-2016-005): a total and a per-source cap enforced at accept (an
//! excess connection is closed at once), a deadline for the first message and an
//! idle timeout after it, and the framer's own size limits; a TLS handshake must
//! finish within the first message's deadline. The driver can close a
//! connection (a banned flooder) through its abort handle.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::sip::framing::StreamFramer;
use crate::tls::ServerTls;

/// What connection tasks tell the driver.
pub enum Net {
    /// a connection is up: its id, where to queue bytes for it, how to close it,
    /// our address on it, and whether it is TLS
    Opened(
        u64,
        mpsc::Sender<Vec<u8>>,
        tokio::task::AbortHandle,
        SocketAddr,
        bool,
    ),
    /// a whole SIP message arrived
    Frame(u64, SocketAddr, Vec<u8>),
    /// the connection is gone
    Closed(u64),
}

/// Connection limits (`[sip] tcp_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLimits {
    /// connections at most
    pub max_connections: usize,
    /// from one source address at most
    pub max_per_source: usize,
    /// a connection must deliver its first message within this
    pub first_message: Duration,
    /// and is closed after this long without a byte
    pub idle: Duration,
}

impl From<&crate::config::Sip> for TcpLimits {
    fn from(s: &crate::config::Sip) -> TcpLimits {
        TcpLimits {
            max_connections: s.tcp_max_connections,
            max_per_source: s.tcp_max_per_source,
            first_message: Duration::from_secs(s.tcp_first_message_s),
            idle: Duration::from_secs(s.tcp_idle_timeout_s),
        }
    }
}

/// Open connections, in total and per source; a slot is freed when its guard drops.
#[derive(Default)]
struct Counts {
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

struct Slot {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut c) = self.counts.lock() {
            c.total = c.total.saturating_sub(1);
            if let Some(n) = c.per_source.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    c.per_source.remove(&self.ip);
                }
            }
        }
    }
}

fn take_slot(counts: &Arc<Mutex<Counts>>, ip: IpAddr, limits: &TcpLimits) -> Option<Slot> {
    let mut c = counts.lock().ok()?;
    let here = c.per_source.get(&ip).copied().unwrap_or(0);
    if c.total >= limits.max_connections || here >= limits.max_per_source {
        return None;
    }
    c.total += 1;
    *c.per_source.entry(ip).or_insert(0) += 1;
    Some(Slot {
        counts: counts.clone(),
        ip,
    })
}

/// A listener on `addr` (IPv6 only for an IPv6 address, so that 0.0.0.0 and [::]
/// can both be bound on one port).
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    TcpListener::from_std(std::net::TcpListener::from(s))
}

/// Connection ids, accepted and dialled alike.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A TLS connection we opened (dial-out): its id, where to queue bytes for it,
/// how to close it, our address on it; reading starts when `go` is sent, once
/// the driver knows it.
pub struct Dialled {
    /// the connection's id
    pub id: u64,
    /// its writer
    pub tx: mpsc::Sender<Vec<u8>>,
    /// how to close it
    pub abort: tokio::task::AbortHandle,
    /// our address on it
    pub local: SocketAddr,
    /// start reading
    pub go: tokio::sync::oneshot::Sender<()>,
}

/// Connect to `to` and complete a TLS handshake that verifies its certificate
/// for `name` (within the first message's deadline); the connection then runs
/// like an accepted one.
pub async fn dial_tls(
    to: SocketAddr,
    name: rustls::pki_types::ServerName<'static>,
    cfg: Arc<rustls::ClientConfig>,
    limits: TcpLimits,
    net: mpsc::Sender<Net>,
) -> std::io::Result<Dialled> {
    let connect = async {
        let tcp = tokio::net::TcpStream::connect(to).await?;
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr()?;
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await?;
        Ok::<_, std::io::Error>((tls, local))
    };
    let (stream, local) = tokio::time::timeout(limits.first_message, connect)
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS connect timed out")
        })??;
    let id = next_id();
    let (tx, rx) = mpsc::channel::<Vec<u8>>(256);
    let (go, ready) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        if ready.await.is_ok() {
            // the peer answers our INVITE: the first-message deadline is its
            let limits = TcpLimits {
                first_message: limits.idle,
                ..limits
            };
            connection(id, stream, to, rx, limits, net).await;
        }
    });
    Ok(Dialled {
        id,
        tx,
        abort: task.abort_handle(),
        local,
        go,
    })
}

/// Accept connections on every listener for ever, each in its own task (TLS on
/// the listeners that have a server configuration); the limits hold across all
/// of them.
pub async fn accept(
    listeners: Vec<(TcpListener, Option<ServerTls>)>,
    limits: TcpLimits,
    net: mpsc::Sender<Net>,
) {
    let counts = Arc::new(Mutex::new(Counts::default()));
    let mut all = tokio::task::JoinSet::new();
    for (l, tls) in listeners {
        all.spawn(accept_on(l, tls, limits, net.clone(), counts.clone()));
    }
    while all.join_next().await.is_some() {}
}

async fn accept_on(
    listener: TcpListener,
    tls: Option<ServerTls>,
    limits: TcpLimits,
    net: mpsc::Sender<Net>,
    counts: Arc<Mutex<Counts>>,
) {
    loop {
        let Ok((stream, addr)) = listener.accept().await else {
            // EMFILE and the like: do not spin
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Some(slot) = take_slot(&counts, addr.ip(), &limits) else {
            tracing::warn!(peer = %addr, "TCP connection refused: connection limit");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let id = next_id();
        let (tx, rx) = mpsc::channel::<Vec<u8>>(256);
        let (go, ready) = tokio::sync::oneshot::channel::<()>();
        let conn_net = net.clone();
        let acceptor = tls.as_ref().map(ServerTls::acceptor);
        let task = tokio::spawn(async move {
            // reads start once the driver knows the connection (Opened first)
            if ready.await.is_err() {
                return;
            }
            match acceptor {
                None => connection(id, stream, addr, rx, limits, conn_net).await,
                Some(acceptor) => {
                    let shake = tokio::time::timeout(limits.first_message, acceptor.accept(stream));
                    match shake.await {
                        Ok(Ok(s)) => connection(id, s, addr, rx, limits, conn_net).await,
                        Ok(Err(e)) => {
                            tracing::info!(peer = %addr, error = %e, "TLS handshake failed");
                            let _ = conn_net.send(Net::Closed(id)).await;
                        }
                        Err(_) => {
                            tracing::info!(peer = %addr, "TLS handshake not finished in time");
                            let _ = conn_net.send(Net::Closed(id)).await;
                        }
                    }
                }
            }
            drop(slot);
        });
        if net
            .send(Net::Opened(
                id,
                tx,
                task.abort_handle(),
                local,
                tls.is_some(),
            ))
            .await
            .is_err()
        {
            return;
        }
        let _ = go.send(());
    }
}

async fn connection<S: AsyncRead + AsyncWrite + Send + 'static>(
    id: u64,
    stream: S,
    addr: SocketAddr,
    mut rx: mpsc::Receiver<Vec<u8>>,
    limits: TcpLimits,
    net: mpsc::Sender<Net>,
) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let writer = tokio::spawn(async move {
        while let Some(data) = rx.recv().await {
            // TLS holds records until flushed (a no-op on plain TCP)
            if wr.write_all(&data).await.is_err() || wr.flush().await.is_err() {
                break;
            }
        }
    });
    let mut framer = StreamFramer::default();
    let mut buf = vec![0u8; 16 * 1024];
    let mut got_message = false;
    'read: loop {
        let wait = if got_message {
            limits.idle
        } else {
            limits.first_message
        };
        let n = match tokio::time::timeout(wait, rd.read(&mut buf)).await {
            Err(_) => {
                tracing::info!(peer = %addr, first = !got_message, "closing idle TCP connection");
                break;
            }
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => n,
        };
        framer.push(&buf[..n]);
        loop {
            match framer.next_message() {
                Ok(Some(msg)) => {
                    got_message = true;
                    if net.send(Net::Frame(id, addr, msg)).await.is_err() {
                        break 'read;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::info!(peer = %addr, error = %e, "closing TCP connection");
                    // a bad or huge Content-Length: the request still gets its 400
                    // (the parser judges the header section) before the close
                    if let Some(head) = framer.pending_head() {
                        let _ = net.send(Net::Frame(id, addr, head)).await;
                    }
                    break 'read;
                }
            }
        }
    }
    // The writer ends by itself once the core drops this connection's sender (on
    // Closed), after writing what was queued: a 400 to the last request still goes out.
    drop(writer);
    let _ = net.send(Net::Closed(id)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_in_total_and_per_source_and_freed_on_drop() {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let limits = TcpLimits {
            max_connections: 3,
            max_per_source: 2,
            first_message: Duration::from_secs(1),
            idle: Duration::from_secs(1),
        };
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = take_slot(&counts, a, &limits).unwrap();
        let _s2 = take_slot(&counts, a, &limits).unwrap();
        assert!(take_slot(&counts, a, &limits).is_none(), "per source");
        let _s3 = take_slot(&counts, b, &limits).unwrap();
        assert!(take_slot(&counts, b, &limits).is_none(), "total");
        drop(s1);
        assert!(take_slot(&counts, a, &limits).is_some());
    }
}
