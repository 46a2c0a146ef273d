//! The API from any node of a cluster: a call about a room another live node
//! holds (`/v1/rooms/{room}/…`) is forwarded to that node's API with the same
//! bearer token and its answer given back as it is; `GET /v1/rooms` lists the
//! rooms of every live node, each with its `node`. A forwarded request carries
//! `X-Caucus-Forwarded`, and is answered where it arrives (never forwarded
//! twice, so a registry that changed meanwhile cannot make a loop).

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::cluster::Registry;

/// Marks a request one node forwarded to another.
pub const FORWARDED: &str = "x-caucus-forwarded";
/// Largest body forwarded (the API's own bodies are small JSON).
const MAX_BODY: usize = 1 << 20;

/// The registry and an HTTP client to the other nodes.
pub struct Forwarder {
    registry: Registry,
    http: reqwest::Client,
}

impl Forwarder {
    /// A forwarder over `registry`.
    pub fn new(registry: Registry) -> Forwarder {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Forwarder { registry, http }
    }
}

/// The room a path is about: `/v1/rooms/{room}` and below.
fn room_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v1/rooms/")?;
    let room = rest.split('/').next()?;
    (!room.is_empty()).then_some(room)
}

/// The middleware (after authentication).
pub(super) async fn cluster(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let Some(fw) = st.cluster.clone() else {
        return next.run(req).await;
    };
    if req.headers().contains_key(FORWARDED) {
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    if path == "/v1/rooms" && req.method() == Method::GET {
        let token = bearer(&req);
        let local = next.run(req).await;
        return everywhere(&fw, local, token).await;
    }
    let Some(room) = room_of(&path) else {
        return next.run(req).await;
    };
    match fw.registry.holder(room).await {
        Ok(Some(node)) => proxy(&fw, req, &node.api_url).await,
        // held here, by nobody, or the registry is down: answered here
        _ => next.run(req).await,
    }
}

fn bearer(req: &Request) -> Option<HeaderValue> {
    req.headers().get(header::AUTHORIZATION).cloned()
}

/// Send `req` to the node at `api` and give back what it answers.
async fn proxy(fw: &Forwarder, req: Request, api: &str) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return ApiError::bad("body too large to forward").into_response();
    };
    let url = format!(
        "{}{}",
        api.trim_end_matches('/'),
        parts.uri.path_and_query().map_or("", |p| p.as_str())
    );
    let mut out = fw.http.request(parts.method.clone(), &url).body(body);
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE] {
        if let Some(v) = parts.headers.get(&name) {
            out = out.header(name, v);
        }
    }
    out = out.header(FORWARDED, "1");
    match out.send().await {
        Ok(r) => {
            let status = r.status();
            let ctype = r.headers().get(header::CONTENT_TYPE).cloned();
            let location = r.headers().get(header::LOCATION).cloned();
            let bytes = r.bytes().await.unwrap_or_default();
            let mut resp = Response::new(Body::from(bytes));
            *resp.status_mut() = status;
            for (n, v) in [(header::CONTENT_TYPE, ctype), (header::LOCATION, location)] {
                if let Some(v) = v {
                    resp.headers_mut().insert(n, v);
                }
            }
            resp
        }
        Err(e) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "node_unreachable",
            format!("the node holding this room does not answer: {e}"),
        )
        .into_response(),
    }
}

/// This node's rooms and every other live node's, each with its node.
async fn everywhere(fw: &Forwarder, local: Response, token: Option<HeaderValue>) -> Response {
    if !local.status().is_success() {
        return local;
    }
    let Ok(bytes) = axum::body::to_bytes(local.into_body(), MAX_BODY).await else {
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "room list")
            .into_response();
    };
    let mut rooms = tag(&bytes, &fw.registry.me.id);
    let others = fw.registry.others().await.unwrap_or_default();
    for node in others {
        let mut r = fw
            .http
            .get(format!("{}/v1/rooms", node.api_url.trim_end_matches('/')))
            .header(FORWARDED, "1");
        if let Some(t) = &token {
            r = r.header(header::AUTHORIZATION, t);
        }
        match r.send().await {
            Ok(resp) if resp.status().is_success() => {
                let b = resp.bytes().await.unwrap_or_default();
                rooms.extend(tag(&b, &node.id));
            }
            _ => tracing::warn!(node = %node.id, "a node's rooms could not be listed"),
        }
    }
    // a room of the configuration is listed by every node: the one that has
    // its participants stands for it
    let mut merged: Vec<serde_json::Value> = Vec::new();
    for r in rooms {
        match merged.iter_mut().find(|m| m["name"] == r["name"]) {
            Some(m) if r["participants"].as_u64() > m["participants"].as_u64() => *m = r,
            Some(_) => {}
            None => merged.push(r),
        }
    }
    axum::Json(merged).into_response()
}

/// A room list with each room's node added.
fn tag(bytes: &[u8], node: &str) -> Vec<serde_json::Value> {
    let list: Vec<serde_json::Value> = serde_json::from_slice(bytes).unwrap_or_default();
    list.into_iter()
        .map(|mut r| {
            r["node"] = serde_json::Value::String(node.to_string());
            r
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_room_a_path_is_about() {
        assert_eq!(room_of("/v1/rooms/r1/participants/3"), Some("r1"));
        assert_eq!(room_of("/v1/rooms/r1"), Some("r1"));
        assert_eq!(room_of("/v1/rooms"), None);
        assert_eq!(room_of("/v1/rooms/"), None);
        assert_eq!(room_of("/v1/recordings"), None);
    }
}
