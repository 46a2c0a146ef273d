//! Is batching the media path's socket I/O worth it? One RTP packet read from and
//! one sent to each of 1,000 connected UDP sockets on loopback, as a room tick
//! does, with plain `recv`/`send` (one system call each, what caucus does) against
//! io_uring (every read, then every send, submitted in one `io_uring_enter`, with
//! registered files and no completion for a successful send). `sendmmsg` and
//! `recvmmsg` batch only on one socket, and a leg has its own, so they cannot
//! batch across legs. `cargo bench --bench io_batch`; benches/PERFORMANCE.md has the
//! figures (io_uring did not pay, so the bridge does not use it).
//!
//! They could batch if every leg shared one port, told apart by source address
//! (port multiplexing): the last pair compares that — one socket, `recvmmsg` and
//! `sendmmsg` 64 datagrams at a time — with a socket per leg, both against 1,000
//! distinct phone sockets (as on a real network, where each send lands somewhere
//! else).
//!
//! The `unsafe` here: pushing io_uring submission entries (the kernel writes into,
//! or reads from, the buffers they name, which stay alive and untouched until every
//! completion has been reaped within the same iteration), and `recvmmsg`, which
//! libc offers only raw (its headers point into buffers that outlive the call).
#![allow(unsafe_code)]

use std::io::IoSlice;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use io_uring::{IoUring, opcode, squeue, types};
use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, sendmmsg};

const LEGS: usize = 1000;
const PACKET: usize = 172; // a 20 ms G.711 frame with its RTP header

/// The legs' sockets, each connected to the peer, which plays every phone.
struct Rig {
    legs: Vec<UdpSocket>,
    peer: UdpSocket,
}

impl Rig {
    fn new() -> Rig {
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_nonblocking(true).unwrap();
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&peer, 4 << 20);
        let legs = (0..LEGS)
            .map(|_| {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.set_nonblocking(true).unwrap();
                s.connect(peer.local_addr().unwrap()).unwrap();
                s
            })
            .collect();
        Rig { legs, peer }
    }

    /// A packet waiting on every leg, as at the start of a tick (not timed).
    fn arrive(&self) {
        for l in &self.legs {
            self.peer
                .send_to(&[0u8; PACKET], l.local_addr().unwrap())
                .unwrap();
        }
    }

    /// Take what the legs sent; returns how many.
    fn drain_peer(&self) -> usize {
        let mut buf = [0u8; 2048];
        let mut n = 0;
        while self.peer.recv(&mut buf).is_ok() {
            n += 1;
        }
        n
    }

    /// Time `iters` ticks of `tick`, which reads every leg's packet and sends one
    /// on every leg, returning how many it read; each is checked to have lost
    /// nothing.
    fn time(&self, iters: u64, mut tick: impl FnMut() -> usize) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            self.arrive();
            let start = Instant::now();
            let got = tick();
            total += start.elapsed();
            assert_eq!(got, LEGS, "a leg read nothing");
            assert_eq!(self.drain_peer(), LEGS, "a send was lost");
        }
        total
    }
}

/// What caucus does: read every leg's socket, then send on every one (one
/// system call each); returns how many reads found a packet.
fn recv_then_send(legs: &[UdpSocket], buf: &mut [u8], pkt: &[u8]) -> usize {
    let mut got = 0;
    for l in legs {
        got += usize::from(l.recv(buf).is_ok());
    }
    for l in legs {
        let _ = l.send(pkt);
    }
    got
}

fn plain(c: &mut Criterion) {
    let rig = Rig::new();
    let mut buf = [0u8; 2048];
    let pkt = [0u8; PACKET];
    c.bench_function("plain_recv_then_send_1000_legs", |b| {
        b.iter_custom(|iters| rig.time(iters, || recv_then_send(&rig.legs, &mut buf, &pkt)))
    });
}

fn uring(c: &mut Criterion) {
    let rig = Rig::new();
    let mut ring: IoUring = match IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(2048)
    {
        Ok(ring) => ring,
        Err(e) => {
            // a kernel without io_uring, or one that forbids it (sysctl
            // kernel.io_uring_disabled, seccomp): nothing to compare
            eprintln!("io_uring unavailable ({e}): only the plain figures");
            return;
        }
    };
    let fds: Vec<i32> = rig.legs.iter().map(|l| l.as_raw_fd()).collect();
    ring.submitter().register_files(&fds).unwrap();
    let mut bufs = vec![0u8; LEGS * 256];
    let pkt = [0u8; PACKET];
    c.bench_function("io_uring_recv_then_send_1000_legs", |b| {
        b.iter_custom(|iters| {
            rig.time(iters, || {
                {
                    let mut sq = ring.submission();
                    for (i, chunk) in bufs.chunks_mut(256).enumerate() {
                        let e = opcode::Recv::new(types::Fixed(i as u32), chunk.as_mut_ptr(), 256)
                            .flags(libc_dontwait())
                            .build();
                        // SAFETY: `bufs` outlives the completions reaped below.
                        unsafe { sq.push(&e).unwrap() };
                    }
                }
                ring.submit_and_wait(LEGS).unwrap();
                let got = ring.completion().filter(|c| c.result() > 0).count();
                {
                    let mut sq = ring.submission();
                    for i in 0..LEGS {
                        let e =
                            opcode::Send::new(types::Fixed(i as u32), pkt.as_ptr(), PACKET as u32)
                                .flags(libc_dontwait())
                                .build()
                                .flags(squeue::Flags::SKIP_SUCCESS);
                        // SAFETY: `pkt` outlives the submission; a UDP send
                        // completes (copies) inside io_uring_enter.
                        unsafe { sq.push(&e).unwrap() };
                    }
                }
                ring.submit().unwrap();
                // only failed sends complete
                assert_eq!(ring.completion().count(), 0, "a send failed");
                got
            })
        })
    });
}

/// MSG_DONTWAIT: a socket with nothing to read fails at once, as the bridge's do.
fn libc_dontwait() -> i32 {
    rustix::net::RecvFlags::DONTWAIT.bits() as i32
}

/// A thousand phones, each with its own socket; the bridge side has either a
/// socket per leg, connected to its phone, or one socket for every leg.
struct Phones {
    phones: Vec<UdpSocket>,
    legs: Vec<UdpSocket>,
    shared: UdpSocket,
}

impl Phones {
    fn new() -> Phones {
        let bind = || {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_nonblocking(true).unwrap();
            s
        };
        let phones: Vec<UdpSocket> = (0..LEGS).map(|_| bind()).collect();
        let legs = phones
            .iter()
            .map(|p| {
                let s = bind();
                s.connect(p.local_addr().unwrap()).unwrap();
                s
            })
            .collect();
        let shared = bind();
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&shared, 4 << 20);
        Phones {
            phones,
            legs,
            shared,
        }
    }

    /// Every phone sends one packet to `to(i)`, then `tick` runs (timed); every
    /// phone must get exactly one back.
    fn time(
        &self,
        iters: u64,
        to: impl Fn(usize) -> std::net::SocketAddr,
        mut tick: impl FnMut() -> usize,
    ) -> Duration {
        let mut buf = [0u8; 2048];
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            for (i, p) in self.phones.iter().enumerate() {
                p.send_to(&[0u8; PACKET], to(i)).unwrap();
            }
            let start = Instant::now();
            let got = tick();
            total += start.elapsed();
            assert_eq!(got, LEGS, "a datagram was not read");
            for p in &self.phones {
                assert!(p.recv(&mut buf).is_ok(), "a send was lost");
            }
        }
        total
    }
}

fn port_per_leg_or_one(c: &mut Criterion) {
    let rig = Phones::new();
    let legs: Vec<_> = rig.legs.iter().map(|l| l.local_addr().unwrap()).collect();
    let mut buf = [0u8; 2048];
    let pkt = [0u8; PACKET];
    c.bench_function("socket_per_leg_1000_phones", |b| {
        b.iter_custom(|iters| {
            rig.time(
                iters,
                |i| legs[i],
                || recv_then_send(&rig.legs, &mut buf, &pkt),
            )
        })
    });
    let shared = rig.shared.local_addr().unwrap();
    let phones: Vec<rustix::net::SocketAddrAny> = rig
        .phones
        .iter()
        .map(|p| p.local_addr().unwrap().into())
        .collect();
    const BATCH: usize = 64;
    let mut bufs = vec![[0u8; 256]; BATCH];
    c.bench_function("one_socket_mmsg_1000_phones", |b| {
        b.iter_custom(|iters| {
            rig.time(
                iters,
                |_| shared,
                || {
                    let mut got = 0;
                    loop {
                        let n = recv_batch(&rig.shared, &mut bufs);
                        got += n;
                        if n < BATCH {
                            break;
                        }
                    }
                    // a reply to every phone, 64 per system call
                    let iov = [IoSlice::new(&pkt)];
                    for chunk in phones.chunks(BATCH) {
                        let mut ctl: Vec<SendAncillaryBuffer<'_, '_, '_>> = chunk
                            .iter()
                            .map(|_| SendAncillaryBuffer::default())
                            .collect();
                        let mut msgs: Vec<MMsgHdr<'_>> = chunk
                            .iter()
                            .zip(ctl.iter_mut())
                            .map(|(to, c)| MMsgHdr::new_with_addr(to, &iov, c))
                            .collect();
                        let mut sent = 0;
                        while sent < msgs.len() {
                            sent += sendmmsg(&rig.shared, &mut msgs[sent..], SendFlags::empty())
                                .unwrap();
                        }
                    }
                    got
                },
            )
        })
    });
}

/// `recvmmsg` of up to `bufs.len()` datagrams without waiting; how many came.
fn recv_batch(sock: &UdpSocket, bufs: &mut [[u8; 256]]) -> usize {
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: an all-zero mmsghdr is valid (no name, no control data)
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    // SAFETY: every header points at one iovec of `iovs`, which points into
    // `bufs`; all outlive the call
    let n = unsafe {
        libc::recvmmsg(
            sock.as_raw_fd(),
            hdrs.as_mut_ptr(),
            hdrs.len() as u32,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    usize::try_from(n).unwrap_or(0)
}

criterion_group!(benches, plain, uring, port_per_leg_or_one);
criterion_main!(benches);
