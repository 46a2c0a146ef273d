//! The mixing clock's units, shared by the room tick, the legs, the bus between
//! shards and the recorder: one tick is 20 ms; a frame at the widest room rate
//! (48 kHz) is 960 samples.

use std::time::Duration;

/// Tick length: the mixing ptime.
pub const TICK: Duration = Duration::from_millis(20);
/// Upper bound for `max_talkers`.
pub const MAX_TALKERS: usize = 16;
/// Samples in a 20 ms frame at 48 kHz, the largest room rate.
pub const MAX_FRAME: usize = 960;
/// A frame of silence at the largest room rate.
pub static SILENCE: [i16; MAX_FRAME] = [0; MAX_FRAME];
