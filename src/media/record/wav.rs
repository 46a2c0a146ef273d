//! The WAV side of recordings: a canonical 44-byte RIFF header for 16-bit
//! linear PCM of any channel count and rate, kept current while the file
//! grows, and read back to close a file a crash cut short.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};

/// Bytes of the header before the samples.
pub const HEADER: u64 = 44;

/// The header of a file holding `data_bytes` of samples.
pub fn header(data_bytes: u32, channels: u16, rate: u32) -> [u8; 44] {
    let block = channels.saturating_mul(2);
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(36u32.saturating_add(data_bytes)).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
    h[22..24].copy_from_slice(&channels.to_le_bytes());
    h[24..28].copy_from_slice(&rate.to_le_bytes());
    h[28..32].copy_from_slice(&(rate.saturating_mul(u32::from(block))).to_le_bytes());
    h[32..34].copy_from_slice(&block.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_bytes.to_le_bytes());
    h
}

/// (channels, rate) of a header this module wrote.
pub fn layout(h: &[u8]) -> Option<(u16, u32)> {
    if h.len() < 44 || &h[0..4] != b"RIFF" || &h[8..16] != b"WAVEfmt " {
        return None;
    }
    let channels = u16::from_le_bytes([h[22], h[23]]);
    let rate = u32::from_le_bytes([h[24], h[25], h[26], h[27]]);
    (channels > 0 && rate >= 8000 && rate.is_multiple_of(50)).then_some((channels, rate))
}

/// Bytes of one 20 ms tick.
pub fn tick_bytes(channels: u16, rate: u32) -> u64 {
    u64::from(rate / 50) * u64::from(channels) * 2
}

/// Rewrite the header for `ticks` ticks of samples, keeping the file position.
pub fn update(file: &mut File, ticks: u64, channels: u16, rate: u32) -> io::Result<()> {
    let data = u32::try_from(ticks * tick_bytes(channels, rate)).unwrap_or(u32::MAX - 36);
    let pos = file.stream_position()?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&header(data, channels, rate))?;
    file.seek(SeekFrom::Start(pos))?;
    Ok(())
}

/// Close a WAV a crash cut short: the header its length calls for (a torn last
/// tick is cut). Returns the ticks it holds.
pub fn recover(file: &mut File) -> io::Result<u64> {
    use std::io::Read;
    let mut h = [0u8; 44];
    file.seek(SeekFrom::Start(0))?;
    file.read_exact(&mut h)?;
    let (channels, rate) =
        layout(&h).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not our WAV"))?;
    let len = file.metadata()?.len();
    let ticks = len.saturating_sub(HEADER) / tick_bytes(channels, rate);
    file.set_len(HEADER + ticks * tick_bytes(channels, rate))?;
    file.seek(SeekFrom::End(0))?;
    update(file, ticks, channels, rate)?;
    Ok(ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_its_layout() {
        let h = header(3200, 2, 16000);
        assert_eq!(layout(&h), Some((2, 16000)));
        assert_eq!(u32::from_le_bytes([h[28], h[29], h[30], h[31]]), 64000);
        assert_eq!(u16::from_le_bytes([h[32], h[33]]), 4);
        assert_eq!(tick_bytes(2, 16000), 1280);
        assert_eq!(layout(b"RIFF...."), None);
    }
}
