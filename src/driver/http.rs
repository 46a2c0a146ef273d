//! The HTTP side: the control API with the browser pages and WHIP (always on;
//! the admin routes answer 403 until a token is configured), the shared WebRTC
//! socket the browsers' media uses, and the metrics and health listener. Their
//! calls come out of one channel into the driver's loop.

use std::net::SocketAddr;

use tokio::sync::mpsc;

use super::DriverError;
use crate::api::ops::ApiCall;
use crate::config::Config;

/// The API token: `[api] token`, or the first line of `token_file`.
pub(super) fn api_token(cfg: &Config) -> Result<Option<String>, DriverError> {
    if let Some(t) = &cfg.api.token {
        return Ok(Some(t.clone()));
    }
    let Some(file) = &cfg.api.token_file else {
        return Ok(None);
    };
    let bad = |reason: String| DriverError::Token {
        file: file.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(file).map_err(|e| bad(e.to_string()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.len() < 16 || !token.bytes().all(|c| c.is_ascii_graphic()) {
        return Err(bad("the token must be 16+ printable characters".into()));
    }
    Ok(Some(token))
}

/// The HTTP side: the control API (started when a token is configured) and the
/// metrics listener (unless `[metrics] listen = ""`). Their calls come out of one
/// channel; the token and the readiness they serve are the driver's to change.
pub(super) struct Http {
    pub(super) calls: mpsc::Receiver<ApiCall>,
    pub(super) token: crate::api::TokenCell,
    pub(super) ready: crate::api::Readiness,
}

async fn bind_http(addr: SocketAddr) -> Result<tokio::net::TcpListener, DriverError> {
    crate::api::bind(addr)
        .await
        .map_err(|source| DriverError::Bind { addr, source })
}

pub(super) async fn start_http(
    cfg: &Config,
    live: crate::events::LiveEvents,
    sounds: crate::sounds::Sounds,
    cluster: Option<crate::cluster::Registry>,
) -> Result<Http, DriverError> {
    let (tx, calls) = mpsc::channel::<ApiCall>(256);
    let token = api_token(cfg)?;
    let w = &cfg.webrtc;
    let hub = crate::media::transport::webrtc::WebRtcHub::start(w.listen, w.public_address)
        .map_err(|source| DriverError::Bind {
            addr: w.listen,
            source,
        })?;
    tracing::info!(listen = %hub.local_addr(), "WebRTC media listening (browser participants)");
    let key = crate::util::secret::TokenKey::new(w.token_secret.as_deref());
    let web = crate::api::web::WebState::new(hub, key, w.join_ttl_s, w.requests_per_s);
    let settings = crate::api::ApiSettings {
        listen: cfg.api.listen,
        token: crate::api::TokenCell::new(token),
        metrics_auth: cfg.api.metrics_auth,
        play_dir: cfg.api.play_dir.clone(),
        recording_dir: cfg.recording.dir.clone(),
        web: Some(std::sync::Arc::new(web)),
        live,
        sounds,
        cluster,
    };
    let ready = crate::api::Readiness::default();
    {
        let listen = cfg.api.listen;
        let listener = bind_http(listen).await?;
        let serve = crate::api::serve(listener, settings.clone(), ready.clone(), tx.clone());
        tokio::spawn(serve);
        if settings.token.is_set() {
            tracing::info!(%listen, "HTTP API and browser pages listening");
        } else {
            tracing::info!(%listen, "browser pages listening; admin API off until [api] token is set");
        }
    }
    if let Some(listen) = cfg.metrics.listen {
        let listener = bind_http(listen).await?;
        let serve = crate::api::serve_metrics(listener, settings.clone(), ready.clone(), tx);
        tokio::spawn(serve);
        tracing::info!(%listen, "metrics and health listening (/metrics, /healthz, /readyz)");
    }
    Ok(Http {
        calls,
        token: settings.token,
        ready,
    })
}
