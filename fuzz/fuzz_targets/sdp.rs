//! SDP parsing and audio selection on any bytes: no panic; a selected stream has
//! a codec we can run.
#![no_main]

use caucus::sdes::MasterKey;
use caucus::sdp::{SessionDescription, select_audio};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sd) = SessionDescription::parse(data)
        // a fixed key of ours, so that SDES lines are taken as the core takes them
        && let Ok((idx, p)) = select_audio(&sd, || Some(MasterKey::from_bytes(&[1; 30])))
    {
        assert!(idx < sd.media.len());
        assert!(p.codec.clock_rate() > 0);
    }
});
