//! The Ogg Opus side of recordings (RFC 7845): an identification header, a
//! comment header, then one Opus packet per 20 ms tick, pages cut by the `ogg`
//! crate (RustAudio, kept). A page is closed every second and flushed, so a file
//! a crash cut short plays to its last whole page; [`recover`] cuts a torn page
//! off. One channel is a plain mono stream (mapping family 0); more are
//! uncoupled mono streams under mapping family 255, one per participant.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};

use ogg::writing::{PacketWriteEndInfo, PacketWriter};

use crate::media::opus::MultiEncoder;

/// Samples the decoder drops at the start (the encoder's look-ahead at 48 kHz).
const PRE_SKIP: u16 = 312;
/// Packets per page, so that a page is flushed every second.
const PAGE_TICKS: u32 = 50;
/// Samples per channel per tick at 48 kHz.
const TICK: u64 = 960;

/// Why the Ogg writer stopped.
#[derive(Debug, thiserror::Error)]
pub enum OggError {
    /// the disk
    #[error("{0}")]
    Io(#[from] io::Error),
    /// the encoder
    #[error("{0}")]
    Opus(#[from] crate::media::opus::OpusError),
}

/// An Ogg Opus file being written.
pub struct OggOpus {
    pages: PacketWriter<'static, BufWriter<File>>,
    enc: MultiEncoder,
    serial: u32,
    ticks: u64,
    out: Vec<u8>,
}

fn id_header(channels: u8) -> Vec<u8> {
    let mut h = Vec::with_capacity(21 + usize::from(channels));
    h.extend_from_slice(b"OpusHead");
    h.push(1); // version
    h.push(channels);
    h.extend_from_slice(&PRE_SKIP.to_le_bytes());
    h.extend_from_slice(&48000u32.to_le_bytes()); // input rate, informational
    h.extend_from_slice(&0i16.to_le_bytes()); // output gain
    if channels == 1 {
        h.push(0);
    } else {
        h.push(255);
        h.push(channels); // streams
        h.push(0); // coupled streams
        h.extend(0..channels);
    }
    h
}

fn comment_header() -> Vec<u8> {
    let vendor = concat!("caucus ", env!("CARGO_PKG_VERSION"));
    let mut h = Vec::new();
    h.extend_from_slice(b"OpusTags");
    h.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    h.extend_from_slice(vendor.as_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h
}

impl OggOpus {
    /// Start a file of `channels` (1..=32) on `file` (empty): both headers,
    /// each on its own page, as RFC 7845 §3 requires.
    pub fn new(file: File, channels: u8, serial: u32) -> Result<OggOpus, OggError> {
        let mut pages = PacketWriter::new(BufWriter::with_capacity(64 * 1024, file));
        pages.write_packet(id_header(channels), serial, PacketWriteEndInfo::EndPage, 0)?;
        pages.write_packet(comment_header(), serial, PacketWriteEndInfo::EndPage, 0)?;
        pages.inner_mut().flush()?;
        Ok(OggOpus {
            pages,
            enc: MultiEncoder::new(channels)?,
            serial,
            ticks: 0,
            out: vec![0; 4000],
        })
    }

    /// Encode one tick of interleaved 48 kHz samples.
    pub fn tick(&mut self, pcm: &[i16]) -> Result<(), OggError> {
        let n = self.enc.encode(pcm, &mut self.out)?;
        self.ticks += 1;
        let end = if self.ticks.is_multiple_of(u64::from(PAGE_TICKS)) {
            PacketWriteEndInfo::EndPage
        } else {
            PacketWriteEndInfo::NormalPacket
        };
        let granule = u64::from(PRE_SKIP) + self.ticks * TICK;
        self.pages
            .write_packet(self.out[..n].to_vec(), self.serial, end, granule)?;
        if end == PacketWriteEndInfo::EndPage {
            self.pages.inner_mut().flush()?;
        }
        Ok(())
    }

    /// Close the stream: a last packet of silence marks its end, so that the
    /// final page carries the end-of-stream flag.
    pub fn finish(mut self, channels: usize) -> Result<File, OggError> {
        let silence = vec![0i16; TICK as usize * channels];
        let n = self.enc.encode(&silence, &mut self.out)?;
        let granule = u64::from(PRE_SKIP) + self.ticks * TICK;
        // the closing packet adds no time: its granule is the stream's end
        self.pages.write_packet(
            self.out[..n].to_vec(),
            self.serial,
            PacketWriteEndInfo::EndStream,
            granule,
        )?;
        let out = self.pages.into_inner();
        out.into_inner().map_err(|e| OggError::Io(e.into_error()))
    }
}

/// Close an Ogg file a crash cut short: cut it after its last whole page.
/// Returns the ticks of audio the whole pages hold.
pub fn recover(file: &mut File) -> io::Result<u64> {
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(0))?;
    let mut r = io::BufReader::new(&mut *file);
    let (mut pos, mut granule) = (0u64, 0u64);
    let mut head = [0u8; 27];
    loop {
        if r.read_exact(&mut head).is_err() || &head[0..4] != b"OggS" {
            break;
        }
        let mut segs = vec![0u8; usize::from(head[26])];
        if r.read_exact(&mut segs).is_err() {
            break;
        }
        let body: u64 = segs.iter().map(|&s| u64::from(s)).sum();
        let end = pos + 27 + segs.len() as u64 + body;
        if end > len {
            break;
        }
        io::copy(&mut (&mut r).take(body), &mut io::sink())?;
        let g = u64::from_le_bytes(head[6..14].try_into().unwrap_or([0; 8]));
        if g != u64::MAX {
            granule = g;
        }
        pos = end;
    }
    drop(r);
    file.set_len(pos)?;
    Ok(granule.saturating_sub(u64::from(PRE_SKIP)) / TICK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_page_is_cut_and_the_whole_ones_kept() {
        let dir = std::env::temp_dir().join(format!("caucus-ogg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.ogg");
        let mut w = OggOpus::new(File::create(&path).unwrap(), 1, 7).unwrap();
        let tone: Vec<i16> = (0..960)
            .map(|i| (8000.0 * (i as f64 * 0.05).sin()) as i16)
            .collect();
        for _ in 0..120 {
            w.tick(&tone).unwrap();
        }
        // two whole pages of 50 ticks reached the disk; the rest is buffered
        drop(w);
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let whole = f.metadata().unwrap().len();
        f.seek(SeekFrom::End(0)).unwrap();
        f.write_all(b"OggS\0\0torn").unwrap();
        assert_eq!(recover(&mut f).unwrap(), 100);
        assert_eq!(f.metadata().unwrap().len(), whole);
        let samples = crate::media::decode::to_8k_mono(std::fs::read(&path).unwrap(), 10)
            .expect("our own file reads back");
        assert!(samples.len() >= 99 * 160, "{}", samples.len());
    }
}
