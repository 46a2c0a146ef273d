//! The SIP parser on any bytes: no panic; what parses (from UTF-8 text) prints and
//! parses again. Bytes that are not UTF-8 are read lossily (each becomes U+FFFD, three
//! bytes), so their printed form can outgrow the line limit: no round trip then;
//! nor when the message is at the header limit (printing adds a Content-Length).
#![no_main]

use caucus::sip::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data) {
        let _ = caucus::sip::headers::RequestHeaders::check(&m);
        if std::str::from_utf8(data).is_err()
            || m.headers.len() + 1 >= caucus::sip::message::MAX_HEADERS
        {
            return;
        }
        let again = Message::parse(&m.to_bytes()).expect("a printed message parses");
        assert_eq!(again.start, m.start);
    }
});
