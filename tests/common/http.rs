//! A minimal HTTP/1.1 client for the control API and a webhook receiver that
//! records what it is sent, both on loopback and without dependencies.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A response: status, headers (lower-case names), body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Start line, headers (lower-case names) and body of one HTTP message.
type Raw = (String, Vec<(String, String)>, Vec<u8>);

fn read_message(r: &mut BufReader<TcpStream>) -> Option<Raw> {
    let mut first = String::new();
    if r.read_line(&mut first).ok()? == 0 {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (n, v) = line.split_once(':')?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let mut body = Vec::new();
    match len {
        Some(n) => {
            body.resize(n, 0);
            r.read_exact(&mut body).ok()?;
        }
        None => {
            let chunked = headers
                .iter()
                .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
            if chunked {
                loop {
                    let mut size = String::new();
                    r.read_line(&mut size).ok()?;
                    let n = usize::from_str_radix(size.trim(), 16).ok()?;
                    let mut chunk = vec![0u8; n + 2];
                    r.read_exact(&mut chunk).ok()?;
                    if n == 0 {
                        break;
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
            } else if first.starts_with("HTTP/") {
                // a response without a length ends with its connection
                r.read_to_end(&mut body).ok()?;
            }
        }
    }
    Some((first.trim_end().to_string(), headers, body))
}

/// One request, `Connection: close`.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Response {
    request_typed(addr, method, path, token, "application/json", body)
}

/// [`request`] with a body of this content type.
pub fn request_typed(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: Option<&str>,
) -> Response {
    request_with(addr, method, path, token, content_type, "", body)
}

/// [`request_typed`] with these header lines (each ending CRLF) too.
pub fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    headers: &str,
    body: Option<&str>,
) -> Response {
    let mut s = TcpStream::connect(addr).expect("connect to the API");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        req.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let (first, headers, body) = read_message(&mut r).expect("an HTTP response");
    let status = first
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Response {
        status,
        headers,
        body,
    }
}

/// A received webhook: headers and body.
#[derive(Debug, Clone)]
pub struct Hook {
    pub method: String,
    /// path and query
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Hook {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    /// The fields of a request, from its query string (GET) or JSON body.
    pub fn params(&self) -> serde_json::Value {
        if self.method != "GET" {
            return self.json();
        }
        let query = self.target.split_once('?').map(|(_, q)| q).unwrap_or("");
        let mut m = serde_json::Map::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            m.insert(
                percent_decode(k),
                serde_json::Value::String(percent_decode(v)),
            );
        }
        serde_json::Value::Object(m)
    }
}

/// `application/x-www-form-urlencoded` decoding.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match h.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a [`Receiver`] answers with.
pub type Answer = Arc<dyn Fn(&Hook) -> (u16, String) + Send + Sync>;

/// A webhook receiver on loopback.
pub struct Receiver {
    pub addr: SocketAddr,
    pub hooks: Arc<Mutex<Vec<Hook>>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    /// Listen on `port` (0: any) and answer 200 to every POST.
    pub fn start(port: u16) -> Receiver {
        Receiver::start_with(port, Arc::new(|_| (200, String::new())))
    }

    /// Listen and answer each request with `answer`.
    pub fn start_with(port: u16, answer: Answer) -> Receiver {
        let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let hooks = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, st) = (hooks.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let Ok((s, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                // each connection on its own thread: a client that keeps one
                // open (a pool) must not hold back another's requests
                let (h, answer) = (h.clone(), answer.clone());
                std::thread::spawn(move || {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut r = BufReader::new(s);
                    // a client may send several requests on one connection
                    while let Some((first, headers, body)) = read_message(&mut r) {
                        let mut words = first.split_whitespace();
                        let method = words.next().unwrap_or("").to_string();
                        let target = words.next().unwrap_or("").to_string();
                        let hook = Hook {
                            method,
                            target,
                            headers,
                            body,
                        };
                        let (code, reply) = answer(&hook);
                        h.lock().unwrap().push(hook);
                        let resp = format!(
                            "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
                            reply.len()
                        );
                        if r.get_mut().write_all(resp.as_bytes()).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Receiver { addr, hooks, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    /// Requests so far: their JSON bodies, or for a GET its query's fields.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.hooks
            .lock()
            .unwrap()
            .iter()
            .map(|h| h.params())
            .collect()
    }

    /// Wait until `pred` holds for the events received.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&[serde_json::Value]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if pred(&self.events()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        pred(&self.events())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Check HMAC-SHA256 of "TIMESTAMP.BODY" against `X-Caucus-Signature`.
pub fn signed(hook: &Hook, secret: &str) -> bool {
    let (Some(ts), Some(sig)) = (
        hook.header("x-caucus-timestamp"),
        hook.header("x-caucus-signature"),
    ) else {
        return false;
    };
    let want = caucus::events::sign(secret.as_bytes(), ts.parse().unwrap_or(0), &hook.body);
    want == sig
}

/// Every line of a Prometheus text exposition is a comment or `name{labels} value`.
pub fn valid_prometheus(text: &str) -> Result<(), String> {
    for line in text.lines() {
        if line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| format!("no value: {line}"))?;
        value
            .parse::<f64>()
            .map_err(|_| format!("bad value: {line}"))?;
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        if name.is_empty()
            || !name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
        {
            return Err(format!("bad name: {line}"));
        }
        if name_end < series.len() && !series.ends_with('}') {
            return Err(format!("bad labels: {line}"));
        }
    }
    Ok(())
}

/// Follow a Server-Sent Events stream: each `(event, data)` as it comes, from
/// a thread that reads until the stream or the receiver is gone.
pub fn sse(
    addr: SocketAddr,
    path: &str,
    token: &str,
) -> std::sync::mpsc::Receiver<(String, String)> {
    let mut s = TcpStream::connect(addr).expect("connect to the API");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(s);
        let mut event = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end();
            if let Some(e) = l.strip_prefix("event: ") {
                event = e.to_string();
            } else if let Some(d) = l.strip_prefix("data: ")
                && tx
                    .send((std::mem::take(&mut event), d.to_string()))
                    .is_err()
            {
                return;
            }
        }
    });
    rx
}
