//! The bridge under test, as a child process on a generated configuration, and
//! what the benchmark reads of it and of the machine: CPU time, memory, the
//! tick statistics it logs.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub(crate) fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One call to the bridge's API with its token: the status and the body.
pub(crate) fn api_call(
    api: SocketAddr,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(api) else {
        return (0, String::new());
    };
    let body = json.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\nAuthorization: Bearer {API_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut out = String::new();
    if s.write_all(req.as_bytes()).is_err() || s.read_to_string(&mut out).is_err() {
        return (0, String::new());
    }
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    (status, body)
}

/// A process's CPU time so far in clock ticks: (user, user + system).
pub(crate) fn proc_cpu_ticks(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // fields after the command name, which may hold spaces
    let rest = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ut: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
    let st: u64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    (ut, ut + st)
}

/// Whole-machine CPU ticks from `/proc/stat`: total, idle, and stolen by the
/// hypervisor (time our virtual CPUs wanted to run and the host ran something else).
pub(crate) fn machine_ticks() -> (u64, u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = s.lines().next().unwrap_or("");
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal (guest time is inside user)
    (v.iter().take(8).sum(), idle, v.get(7).copied().unwrap_or(0))
}

/// Seconds a worker's tick statistics cover (the bridge's report interval).
pub(crate) const STATS_EVERY: f64 = 5.0;

/// Seconds since midnight UTC now (log timestamps are UTC).
pub(crate) fn utc_second_of_day() -> f64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    now % 86400.0
}

/// Seconds since midnight of a log line's RFC 3339 UTC timestamp
/// (`2026-11-22T06:14:33.241610Z …`).
pub(crate) fn log_second_of_day(line: &str) -> Option<f64> {
    let time = line.split_whitespace().next()?.split_once('T')?.1;
    let time = time.strip_suffix('Z')?;
    let mut parts = time.splitn(3, ':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// `b - a` in seconds of day, across midnight.
pub(crate) fn since(a: f64, b: f64) -> f64 {
    let d = b - a;
    if d < -43200.0 {
        d + 86400.0
    } else if d > 43200.0 {
        d - 86400.0
    } else {
        d
    }
}

pub(crate) fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The bridge running, killed when dropped.
pub(crate) struct Bridge {
    pub(crate) child: Child,
    pub(crate) sip: SocketAddr,
    /// the HTTP listener (WHIP, with [`API_TOKEN`])
    pub(crate) api: SocketAddr,
    pub(crate) log: PathBuf,
}

/// The API token of the bridge under test (WHIP legs join with it).
pub(crate) const API_TOKEN: &str = "caucus-load-token-0123456789";

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start the bridge with `rooms` rooms sized for `participants`, and wait until
/// it answers OPTIONS.
pub(crate) fn start_bridge(
    bin: &Path,
    rooms: usize,
    participants: usize,
    overload: Option<u32>,
    webrtc: bool,
    baseline: bool,
    untreated: bool,
) -> Bridge {
    let sip_port = free_port();
    let api_port = free_port();
    // every bridge its own WebRTC port (runs side by side); a build from before
    // browser legs (`--baseline`, for A/B runs) knows no [webrtc]
    let web = match (webrtc, baseline) {
        (_, true) => String::new(),
        (true, false) => format!(
            "[webrtc]\nlisten = \"127.0.0.1:{}\"\nrequests_per_s = 100000\n",
            free_port()
        ),
        (false, false) => format!("[webrtc]\nlisten = \"127.0.0.1:{}\"\n", free_port()),
    };
    // below the ephemeral range (32768+), where the generator's own sockets live
    let port_min = 10000u32;
    let port_max = (port_min + 2 * participants as u32 + 200).min(65534);
    // overload control judges the machine this benchmark loads on purpose: off,
    // unless the ramp is there to see it work
    let overload = match overload {
        Some(p) => format!("overload_load_percent = {p}\n"),
        None => String::new(),
    };
    let mut cfg = format!(
        "[sip]\nlisten = \"127.0.0.1:{sip_port}\"\n{overload}[rtp]\nport_min = {port_min}\nport_max = {port_max}\nworkers = 0\n[security]\ntrusted_sources = [\"127.0.0.0/8\"]\n[metrics]\nlisten = \"\"\n[api]\nlisten = \"127.0.0.1:{api_port}\"\ntoken = \"{API_TOKEN}\"\n{web}"
    );
    let treatment = if untreated {
        "denoise = false\nlevel = false\n"
    } else {
        ""
    };
    for r in 0..rooms {
        cfg.push_str(&format!(
            "[[room]]\nname = \"r{r}\"\nmax_participants = 10000\n{treatment}"
        ));
    }
    let dir = std::env::temp_dir();
    let conf = dir.join(format!("caucus-load-{sip_port}.toml"));
    std::fs::write(&conf, cfg).unwrap();
    let log = dir.join(format!("caucus-load-{sip_port}.log"));
    let child = Command::new(bin)
        .args(["run", "--config"])
        .arg(&conf)
        .env("RUST_LOG", "warn,caucus::media::stats=info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .expect("starting the bridge (build it with cargo build --release)");
    let sip = SocketAddr::from(([127, 0, 0, 1], sip_port));
    let api = SocketAddr::from(([127, 0, 0, 1], api_port));
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    for i in 0..100 {
        let m = format!(
            "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKup{i}\r\nFrom: <sip:l@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: up{i}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            probe.local_addr().unwrap()
        );
        probe.send_to(m.as_bytes(), sip).unwrap();
        let mut b = [0u8; 2048];
        if probe.recv_from(&mut b).is_ok() {
            return Bridge {
                child,
                sip,
                api,
                log,
            };
        }
    }
    let _ = Bridge {
        child,
        sip,
        api,
        log: log.clone(),
    };
    panic!("bridge did not start; see {}", log.display());
}
