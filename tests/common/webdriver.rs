//! A small W3C WebDriver client for Debian's chromedriver and headless
//! chromium: open pages, find elements, type, click, run a script, on loopback.
//! Chromium runs with a fake microphone playing a WAV file, media permission
//! granted, loopback allowed for WebRTC, and no background traffic (the machine
//! has no network).
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::http::request_typed;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Whether chromium and chromedriver are installed (the test command installs
/// them; a developer's machine may not have them).
pub fn available() -> bool {
    ["chromium", "chromedriver"].iter().all(|b| {
        Command::new(b)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// One chromedriver with one browser session.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    profile: std::path::PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.send("DELETE", "", None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    /// Start chromedriver and a headless chromium whose microphone plays `wav`.
    pub fn start(wav: &std::path::Path) -> Browser {
        let port = super::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let start = Instant::now();
        while TcpStream::connect(addr).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = std::env::temp_dir().join(format!("caucus-chromium-{port}"));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                    format!("--use-file-for-fake-audio-capture={}", wav.display()),
                    "--autoplay-policy=no-user-gesture-required",
                    "--allow-loopback-in-peer-connection",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-quic",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let mut b = Browser {
            driver,
            addr,
            session: String::new(),
            profile,
        };
        let v = b
            .send("POST", "/session", Some(caps))
            .expect("a WebDriver session");
        b.session = v["sessionId"].as_str().expect("a session id").to_string();
        b
    }

    /// One WebDriver command; its `value`, or the error it gave.
    fn send(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let path = if path == "/session" {
            path.to_string()
        } else {
            format!("/session/{}{path}", self.session)
        };
        let body = body.map(|b| b.to_string());
        let r = request_typed(
            self.addr,
            method,
            &path,
            None,
            "application/json",
            body.as_deref(),
        );
        let v: Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
        if r.status == 200 {
            Ok(v.get("value").cloned().unwrap_or(Value::Null))
        } else {
            Err(v["value"]["message"]
                .as_str()
                .unwrap_or("error")
                .to_string())
        }
    }

    /// Open `url` in the current window.
    pub fn open(&self, url: &str) {
        self.send("POST", "/url", Some(json!({"url": url})))
            .expect("navigate");
    }

    /// A new window (tab), made current; returns its handle.
    pub fn new_window(&self) -> String {
        let v = self
            .send("POST", "/window/new", Some(json!({"type": "tab"})))
            .expect("a new window");
        let h = v["handle"].as_str().unwrap().to_string();
        self.switch_to(&h);
        h
    }

    /// The current window's handle.
    pub fn window(&self) -> String {
        self.send("GET", "/window", None)
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Every window's handle.
    pub fn windows(&self) -> Vec<String> {
        let v = self.send("GET", "/window/handles", None).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .filter_map(|h| h.as_str().map(str::to_string))
            .collect()
    }

    /// Make window `h` current.
    pub fn switch_to(&self, h: &str) {
        self.send("POST", "/window", Some(json!({"handle": h})))
            .expect("switch window");
    }

    /// Close the current window (its page is unloaded).
    pub fn close_window(&self) {
        self.send("DELETE", "/window", None)
            .expect("close the window");
    }

    /// The element `css` selects, waiting up to 10 s for it.
    pub fn find(&self, css: &str) -> String {
        let start = Instant::now();
        loop {
            if let Ok(v) = self.send(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            ) {
                if let Some(e) = v[ELEMENT].as_str() {
                    return e.to_string();
                }
                panic!("find {css}: {v}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no element {css}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Click what `css` selects. A live page (the admin page re-renders its
    /// lists on every event) may replace the element between finding and
    /// clicking it: then it is found again.
    pub fn click(&self, css: &str) {
        let mut tries = 0;
        loop {
            let e = self.find(css);
            match self.send("POST", &format!("/element/{e}/click"), Some(json!({}))) {
                Ok(_) => return,
                Err(m) if m.contains("stale element") && tries < 5 => tries += 1,
                Err(m) => panic!("click {css}: {m}"),
            }
        }
    }

    /// Replace the text of the input `css` selects.
    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.send("POST", &format!("/element/{e}/clear"), Some(json!({})))
            .unwrap();
        self.send(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        )
        .unwrap();
    }

    /// Run `script` (a function body) in the page; what it returns.
    pub fn eval(&self, script: &str) -> Value {
        self.send(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .unwrap_or_else(|m| panic!("script failed: {m}"))
    }

    /// Wait up to `limit` for `script` to return true.
    pub fn wait_for(&self, script: &str, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.eval(script) == Value::Bool(true) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}
