//! Dial-out over TLS (RFC 3261 §26.2, RFC 5630): a `sips:` or `;transport=tls`
//! target is connected to, and its certificate verified for the target's
//! address, before the core sends the INVITE down that connection. The
//! certificate is checked against a `[[trunk]] ca_file` for that host, else
//! Mozilla's roots; the configuration is read per call, so a reload's trunks
//! take effect at once. A connection that cannot be made answers the API call
//! with the reason; nothing is dialled.

use std::net::SocketAddr;

use tokio::sync::mpsc;

use super::tcp::{self, Dialled, Net, TcpLimits};
use crate::api::ops::{ApiCall, Op};
use crate::config::Trunk;
use crate::core::control::ControlError;

/// Whether `to` asks for TLS: a SIPS URI, or `transport=tls` among its
/// parameters.
pub(super) fn wants_tls(to: &str) -> bool {
    let to = to.trim();
    if to.get(..5).is_some_and(|s| s.eq_ignore_ascii_case("sips:")) {
        return true;
    }
    to.split(';')
        .skip(1)
        .any(|p| p.trim().eq_ignore_ascii_case("transport=tls"))
}

/// The trunk whose `host` (host or host:port) names `to`.
fn trunk_for(trunks: &[Trunk], to: SocketAddr) -> Option<&Trunk> {
    let ip = to.ip().to_string();
    let bracketed = format!("[{ip}]");
    trunks
        .iter()
        .find(|t| t.host == to.to_string() || t.host == ip || t.host == bracketed)
}

/// Open and verify the connection for `call` (a dial to `to`), then hand both
/// to the driver on `done`; on failure the call is answered with the reason.
pub(super) fn start(
    call: ApiCall,
    to: SocketAddr,
    trunks: &[Trunk],
    limits: TcpLimits,
    net: mpsc::Sender<Net>,
    done: mpsc::UnboundedSender<(ApiCall, Dialled)>,
) {
    let ca = trunk_for(trunks, to).and_then(|t| t.ca_file.clone());
    tokio::spawn(async move {
        let fail = |call: ApiCall, why: String| {
            tracing::info!(target = %to, reason = %why, "dial-out over TLS not connected");
            let _ = call.reply.send(Err(ControlError::BadDestination(format!(
                "TLS to {to}: {why}"
            ))));
        };
        let cfg = match crate::tls::client_config(ca.as_deref()) {
            Ok(c) => c,
            Err(e) => return fail(call, e.to_string()),
        };
        let name = rustls::pki_types::ServerName::IpAddress(to.ip().into());
        match tcp::dial_tls(to, name, cfg, limits, net).await {
            Ok(d) => {
                let _ = done.send((call, d));
            }
            Err(e) => fail(call, e.to_string()),
        }
    });
}

/// The dial target of a dial operation, if it is one that asks for TLS and
/// has no connection yet.
pub(super) fn tls_target(op: &Op) -> Option<SocketAddr> {
    match op {
        Op::Dial(_, req) | Op::DialConversation(_, _, req)
            if req.flow.is_none() && wants_tls(&req.to) =>
        {
            super::dial_target(&req.to)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_asked_for_by_sips_or_the_transport_parameter() {
        assert!(wants_tls("sips:alice@192.0.2.1"));
        assert!(wants_tls("sip:alice@192.0.2.1:5061;transport=TLS"));
        assert!(!wants_tls("sip:alice@192.0.2.1;transport=tcp"));
        assert!(!wants_tls("sip:tls@192.0.2.1"));
    }
}
