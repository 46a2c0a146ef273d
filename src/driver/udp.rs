//! SIP over UDP on one or more listen addresses (IPv4 and IPv6 together). An
//! IPv6 socket is IPv6 only, so `0.0.0.0:5060` and `[::]:5060` can be bound side by
//! side. A wildcard address is read with `IP_PKTINFO` / `IPV6_RECVPKTINFO`, so that
//! each datagram carries the local address it was sent to: Via, Contact and SDP
//! then name an address the phone can reach (never 0.0.0.0, which older phones
//! read as hold), and the replies leave from that same address.
//!
//! nix does the `recvmsg`/`sendmsg` with control messages: tokio and rustix offer
//! neither packet-info option, and the project allows no `unsafe` of its own here.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::task::{Context, Poll};

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, sendmsg, setsockopt,
    sockopt,
};
use tokio::io::Interest;

/// Room for one IPv4 or IPv6 packet-info control message, aligned as `cmsghdr`.
#[repr(C, align(8))]
struct CmsgBuf([u8; 64]);

/// One SIP UDP listen socket.
pub struct SipUdp {
    sock: tokio::net::UdpSocket,
    /// the address it is bound to (a wildcard, or one address)
    pub bound: SocketAddr,
    cmsg: CmsgBuf,
}

impl SipUdp {
    /// Bind `addr`, with the socket buffers a burst of requests needs.
    pub fn bind(addr: SocketAddr) -> io::Result<SipUdp> {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            s.set_only_v6(true)?;
        }
        // a burst must not overflow the kernel queue before we read it (the
        // kernel caps these at net.core.rmem_max / wmem_max)
        let _ = s.set_recv_buffer_size(4 << 20);
        let _ = s.set_send_buffer_size(4 << 20);
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        if addr.ip().is_unspecified() {
            let on = true;
            if addr.is_ipv6() {
                setsockopt(&s, sockopt::Ipv6RecvPacketInfo, &on)?;
            } else {
                setsockopt(&s, sockopt::Ipv4PacketInfo, &on)?;
            }
        }
        let bound = s.local_addr()?.as_socket().unwrap_or(addr);
        let sock = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(s))?;
        Ok(SipUdp {
            sock,
            bound,
            cmsg: CmsgBuf([0; 64]),
        })
    }

    fn wildcard(&self) -> bool {
        self.bound.ip().is_unspecified()
    }

    /// Receive one datagram: its length, source, and the local address it was
    /// sent to.
    pub fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr, SocketAddr)>> {
        loop {
            match self.sock.poll_recv_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            let (bound, wildcard) = (self.bound, self.wildcard());
            let fd = self.sock.as_raw_fd();
            let cmsg = &mut self.cmsg.0;
            let got = self.sock.try_io(Interest::READABLE, || {
                let mut iov = [IoSliceMut::new(buf)];
                let control = wildcard.then_some(&mut cmsg[..]);
                let msg = recvmsg::<SockaddrStorage>(fd, &mut iov, control, MsgFlags::empty())
                    .map_err(io::Error::from)?;
                let src = msg.address.as_ref().and_then(socket_addr).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "datagram without a source")
                })?;
                let mut local = bound;
                if wildcard {
                    for c in msg.cmsgs().map_err(io::Error::from)? {
                        match c {
                            ControlMessageOwned::Ipv4PacketInfo(pi) => {
                                let ip = std::net::Ipv4Addr::from(u32::from_be(pi.ipi_addr.s_addr));
                                local = SocketAddr::new(IpAddr::V4(ip), bound.port());
                            }
                            ControlMessageOwned::Ipv6PacketInfo(pi) => {
                                let ip = std::net::Ipv6Addr::from(pi.ipi6_addr.s6_addr);
                                local = SocketAddr::new(IpAddr::V6(ip), bound.port());
                            }
                            _ => {}
                        }
                    }
                }
                Ok((msg.bytes, src, local))
            });
            match got {
                Ok(r) => return Poll::Ready(Ok(r)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Send `data` to `to`, from `local` (on a wildcard socket the source address
    /// is set to it, so a reply leaves from where the request arrived).
    pub async fn send(&self, data: &[u8], to: SocketAddr, local: SocketAddr) -> io::Result<()> {
        if !self.wildcard() || local.ip().is_unspecified() {
            self.sock.send_to(data, to).await?;
            return Ok(());
        }
        let fd = self.sock.as_raw_fd();
        let dest = SockaddrStorage::from(to);
        self.sock
            .async_io(Interest::WRITABLE, || {
                let iov = [IoSlice::new(data)];
                let sent = match local.ip() {
                    IpAddr::V4(v4) => {
                        let pi = nix::libc::in_pktinfo {
                            ipi_ifindex: 0,
                            ipi_spec_dst: nix::libc::in_addr {
                                s_addr: u32::from(v4).to_be(),
                            },
                            ipi_addr: nix::libc::in_addr { s_addr: 0 },
                        };
                        let c = [ControlMessage::Ipv4PacketInfo(&pi)];
                        sendmsg(fd, &iov, &c, MsgFlags::empty(), Some(&dest))
                    }
                    IpAddr::V6(v6) => {
                        let pi = nix::libc::in6_pktinfo {
                            ipi6_addr: nix::libc::in6_addr {
                                s6_addr: v6.octets(),
                            },
                            ipi6_ifindex: 0,
                        };
                        let c = [ControlMessage::Ipv6PacketInfo(&pi)];
                        sendmsg(fd, &iov, &c, MsgFlags::empty(), Some(&dest))
                    }
                };
                sent.map(|_| ()).map_err(io::Error::from)
            })
            .await
    }
}

fn socket_addr(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    let v6 = s.as_sockaddr_in6()?;
    let a = SocketAddrV6::from(*v6);
    // never a v4-mapped source (the sockets are IPv6 only, but be plain about it)
    Some(SocketAddr::new(a.ip().to_canonical(), a.port()))
}

/// The listen sockets, read together.
pub struct Listeners(pub Vec<SipUdp>);

impl Listeners {
    /// The next datagram from any socket: (length, source, local address).
    pub async fn recv(&mut self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, SocketAddr)> {
        let socks = &mut self.0;
        let mut start = 0usize;
        std::future::poll_fn(move |cx| {
            // start where the last one left off, so one busy socket cannot starve
            // the others
            let n = socks.len();
            for k in 0..n {
                let i = (start + k) % n;
                if let Poll::Ready(r) = socks[i].poll_recv(cx, buf) {
                    start = i + 1;
                    return Poll::Ready(r);
                }
            }
            Poll::Pending
        })
        .await
    }

    /// The socket to send from for a flow whose local address is `local`.
    pub fn for_local(&self, local: SocketAddr) -> Option<&SipUdp> {
        self.0
            .iter()
            .find(|s| s.bound == local)
            .or_else(|| {
                self.0.iter().find(|s| {
                    s.wildcard()
                        && s.bound.port() == local.port()
                        && s.bound.is_ipv4() == local.is_ipv4()
                })
            })
            .or_else(|| self.0.iter().find(|s| s.bound.is_ipv4() == local.is_ipv4()))
    }

    /// Our address towards `target` for a request we start (dial-out): the listen
    /// address of its family, or on a wildcard listener the address the route to
    /// the target leaves from (a UDP connect picks it; nothing is sent).
    pub fn local_towards(&self, target: SocketAddr) -> Option<SocketAddr> {
        let s = self
            .0
            .iter()
            .find(|s| s.bound.is_ipv4() == target.is_ipv4())?;
        if !s.wildcard() {
            return Some(s.bound);
        }
        let probe = std::net::UdpSocket::bind(SocketAddr::new(s.bound.ip(), 0)).ok()?;
        probe.connect(target).ok()?;
        Some(SocketAddr::new(
            probe.local_addr().ok()?.ip(),
            s.bound.port(),
        ))
    }
}
