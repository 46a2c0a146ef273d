//! TCP framing on any byte stream cut anywhere: no panic, no unbounded buffer.
#![no_main]

use caucus::sip::framing::StreamFramer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(cut).max(1);
    let mut f = StreamFramer::default();
    for chunk in rest.chunks(step) {
        f.push(chunk);
        loop {
            match f.next_message() {
                Ok(Some(m)) => assert!(m.len() <= rest.len()),
                Ok(None) => break,
                Err(_) => return, // the connection would be closed
            }
        }
    }
});
