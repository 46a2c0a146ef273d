//! The structure the code keeps, checked on the source tree: no source file
//! over 1,000 lines (tests aside), a signalling core that never touches a
//! clock, a socket, a file or the runtime, media code whose sockets live only
//! in `media::transport`, and top-level modules that import each other without
//! a circle. Each rule says what broke it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 1000;

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("reading the source tree") {
            let p = e.expect("a directory entry").path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// A file that is a test module as a whole (`mod tests;` under `#[cfg(test)]`).
fn is_test_file(p: &Path) -> bool {
    let name = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    name == "tests" || name.ends_with("_tests")
}

/// The code of a file that is built outside tests: up to its first
/// `#[cfg(test)]` at the top level, with comments removed.
fn shipped_code(p: &Path) -> String {
    let text = std::fs::read_to_string(p).expect("reading a source file");
    text.lines()
        .take_while(|l| !l.starts_with("#[cfg(test)]"))
        .map(|l| match l.find("//") {
            // a `//` inside a string (a URL) is rare in these files and only
            // hides the rest of its own line
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn relative(p: &Path) -> String {
    p.strip_prefix(src()).unwrap_or(p).display().to_string()
}

#[test]
fn no_source_file_is_over_a_thousand_lines() {
    let mut long = Vec::new();
    for p in rust_files(&src()).into_iter().filter(|p| !is_test_file(p)) {
        let text = std::fs::read_to_string(&p).expect("reading a source file");
        let lines = text
            .lines()
            .take_while(|l| !l.starts_with("#[cfg(test)]"))
            .count();
        if lines > MAX_LINES {
            long.push(format!("{} has {lines} lines", relative(&p)));
        }
    }
    assert!(long.is_empty(), "split these along their seams: {long:?}");
}

#[test]
fn the_core_reads_no_clock_and_touches_no_socket_file_or_runtime() {
    let banned = [
        "tokio",
        "UdpSocket",
        "Instant::now",
        "SystemTime",
        "std::fs",
    ];
    let mut found = Vec::new();
    for p in rust_files(&src().join("core"))
        .into_iter()
        .filter(|p| !is_test_file(p))
    {
        let code = shipped_code(&p);
        for name in banned {
            if code.contains(name) {
                found.push(format!("{} names {name}", relative(&p)));
            }
        }
    }
    assert!(found.is_empty(), "the core is sans-IO: {found:?}");
}

#[test]
fn media_sockets_live_in_the_transport_only() {
    let socket_names = [
        "UdpSocket",
        "TcpStream",
        "TcpListener",
        "rustix::net",
        "socket2",
        "recv_from",
        "send_to",
        "recvmmsg",
        "sendmmsg",
        "libc::recv",
        "libc::send",
    ];
    let transport = src().join("media").join("transport");
    let mut found = Vec::new();
    for p in rust_files(&src().join("media"))
        .into_iter()
        .filter(|p| !p.starts_with(&transport) && !is_test_file(p))
    {
        let code = shipped_code(&p);
        for name in socket_names {
            if code.contains(name) {
                found.push(format!("{} names {name}", relative(&p)));
            }
        }
    }
    assert!(
        found.is_empty(),
        "media reaches a leg through media::transport: {found:?}"
    );
}

/// Top-level module → the top-level modules its shipped code names as
/// `crate::…`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = src();
    let mut tops = BTreeSet::new();
    for e in std::fs::read_dir(&root).expect("reading src") {
        let p = e.expect("an entry").path();
        let name = p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("")
            .to_string();
        if p.is_dir() && name != "bin" || p.extension().is_some_and(|x| x == "rs") {
            tops.insert(name);
        }
    }
    tops.remove("lib");
    tops.remove("main");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in rust_files(&root).into_iter().filter(|p| !is_test_file(p)) {
        let rel = p.strip_prefix(&root).expect("under src");
        let first = rel.components().next().expect("a component");
        let top = Path::new(first.as_os_str())
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("")
            .to_string();
        if !tops.contains(&top) {
            continue;
        }
        let code = shipped_code(&p);
        let uses = graph.entry(top.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                .collect();
            if name != top && tops.contains(&name) {
                uses.insert(name);
            }
        }
    }
    graph
}

/// A circle in `graph`, if there is one.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        at: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == at) {
            let mut c = path[i..].to_vec();
            c.push(at.to_string());
            return Some(c);
        }
        if done.contains(at) {
            return None;
        }
        path.push(at.to_string());
        for next in g.get(at).into_iter().flatten() {
            if let Some(c) = visit(g, next, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(at.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|k| visit(graph, k, &mut Vec::new(), &mut done))
}

#[test]
fn top_level_modules_import_without_circles() {
    let g = module_graph();
    assert!(
        g.get("core")
            .is_some_and(|u| !u.contains("driver") && !u.contains("api")),
        "the core sits below the driver and the API: {g:?}"
    );
    assert!(
        g.get("media").is_some_and(|u| !u.contains("core")),
        "media does not know signalling: {g:?}"
    );
    if let Some(c) = circle(&g) {
        panic!("import circle {}; graph {g:?}", c.join(" -> "));
    }
}

#[test]
fn the_circle_finder_finds_circles() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    assert_eq!(circle(&g), None);
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        circle(&g),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}
