//! caucus: a SIP audio conference bridge.
//!
//! Layers, inputs flowing down and outputs up (see README "Architecture"):
//! [`sip`] syntax → [`core`] (transactions, dialogs, legs, rooms; sans-IO) →
//! [`media`] (RTP, jitter buffer, codecs, mixer; worker threads) with [`driver`]
//! the only code that touches sockets, clocks and signals.

pub mod answer;
pub mod api;
pub mod check;
pub mod cluster;
pub mod config;
pub mod core;
pub mod ctl;
pub mod driver;
pub mod events;
pub mod ids;
pub mod media;
pub mod metrics;
pub mod sdes;
pub mod sdp;
pub mod sip;
pub mod sounds;
pub mod tls;
pub mod tts;
pub mod util;
