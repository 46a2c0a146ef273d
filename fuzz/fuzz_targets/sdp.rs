//! SDP parsing and audio selection on any bytes: no panic; a selected stream has
//! a codec we can run.
#![no_main]

use caucus::sdp::{SessionDescription, select_audio};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sd) = SessionDescription::parse(data)
        && let Ok((idx, p)) = select_audio(&sd)
    {
        assert!(idx < sd.media.len());
        assert!(p.codec.clock_rate() > 0);
    }
});
