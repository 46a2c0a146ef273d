//! Media: RTP/RTCP (RFC 3550), DTMF events (RFC 4733), codecs, jitter buffer,
//! resampling and the room mixer, plus the worker threads that run them.

pub mod bus;
pub mod codec;
pub mod contract;
pub mod decode;
pub mod denoise;
pub mod dtmf;
pub mod engine;
pub mod frame;
pub mod g711;
pub mod goertzel;
pub mod jitter;
pub mod leg;
pub mod level;
pub mod mixer;
pub mod opus;
#[cfg(feature = "libopus")]
pub mod opus_c;
pub mod opus_packet;
pub mod prefetch;
pub mod prompt;
pub mod record;
pub mod resample;
pub mod room;
pub mod rtp;
pub mod srtp;
pub mod transport;
pub mod vad;
pub mod worker;
