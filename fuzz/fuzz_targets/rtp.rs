//! RTP and RTCP parsing on any bytes, and the receive statistics fed what parses.
#![no_main]

use caucus::media::rtp::{ReceiverStats, RtpPacket, sender_report_ntp_mid};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut stats = ReceiverStats::default();
    for (i, chunk) in data.chunks(64).enumerate() {
        if let Ok(p) = RtpPacket::parse(chunk) {
            assert!(p.payload.len() <= chunk.len());
            stats.on_packet(p.seq, p.timestamp, p.ssrc, (i as u32) * 160);
            let _ = stats.cumulative_lost();
            let mut block = [0u8; 24];
            stats.report_block(&mut block, i as u64 * 20);
        }
        let _ = sender_report_ntp_mid(chunk);
    }
});
