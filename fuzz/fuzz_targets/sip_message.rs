//! The SIP parser on any bytes: no panic; what parses prints and parses again.
#![no_main]

use caucus::sip::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data) {
        let again = Message::parse(&m.to_bytes()).expect("a printed message parses");
        assert_eq!(again.start, m.start);
        let _ = caucus::sip::headers::RequestHeaders::check(&m);
    }
});
