//! A recording's writer thread: takes each tick's channels at the room's rate
//! (8, 16 or 48 kHz, which changes when a G.722 or Opus leg comes or goes), brings each
//! channel to the file's rate, interleaves, and writes WAV samples or Opus
//! packets. Resampling and encoding run here, never on the media worker.

use std::fs::File;
use std::io::{self, BufWriter, Write};

use super::ogg::{OggError, OggOpus};
use super::wav;
use crate::media::contract::RecordFormat;
use crate::media::resample::{Downsampler, Upsampler};

/// One channel's rate conversion, rebuilt when the room's rate changes.
#[derive(Default)]
struct Convert {
    from: u32,
    up: Option<Upsampler>,
    down: Option<Downsampler>,
}

impl Convert {
    /// `input` at `from` Hz → `out` (cleared) at `to` Hz.
    fn run(&mut self, from: u32, to: u32, input: &[i16], out: &mut Vec<i16>) {
        if from != self.from {
            *self = Convert {
                from,
                ..Convert::default()
            };
        }
        out.clear();
        out.resize((to / 50) as usize, 0);
        // room and file rates are 8, 16 and 48 kHz: always a whole factor
        if from == to {
            let k = out.len().min(input.len());
            out[..k].copy_from_slice(&input[..k]);
        } else if to > from && to.is_multiple_of(from) {
            let factor = (to / from) as usize;
            self.up
                .get_or_insert_with(|| Upsampler::new(factor))
                .process(input, out);
        } else if from > to && from.is_multiple_of(to) {
            let factor = (from / to) as usize;
            self.down
                .get_or_insert_with(|| Downsampler::new(factor))
                .process(input, out);
        }
        // anything else stays silence, not noise
    }
}

/// Where the samples go.
pub enum Sink {
    /// 16-bit PCM after a WAV header
    Wav(BufWriter<File>),
    /// Opus packets in Ogg pages
    Ogg(Box<OggOpus>),
}

/// The writer's state.
pub struct Writer {
    sink: Sink,
    channels: usize,
    rate: u32,
    conv: Vec<Convert>,
    planes: Vec<Vec<i16>>,
    frame: Vec<i16>,
    bytes: Vec<u8>,
    /// ticks written
    pub ticks: u64,
}

/// Why the writer stopped early.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WriteError(String);

impl From<io::Error> for WriteError {
    fn from(e: io::Error) -> Self {
        WriteError(e.to_string())
    }
}

impl From<OggError> for WriteError {
    fn from(e: OggError) -> Self {
        WriteError(e.to_string())
    }
}

impl Writer {
    /// A writer of `channels` at `rate` Hz on `file` (a WAV file's header is
    /// written already; an Ogg file is empty).
    pub fn new(
        file: File,
        format: RecordFormat,
        channels: u16,
        rate: u32,
        serial: u32,
    ) -> Result<Writer, WriteError> {
        let sink = match format {
            RecordFormat::Wav => Sink::Wav(BufWriter::with_capacity(64 * 1024, file)),
            RecordFormat::Ogg => Sink::Ogg(Box::new(OggOpus::new(
                file,
                u8::try_from(channels).unwrap_or(u8::MAX),
                serial,
            )?)),
        };
        let channels = usize::from(channels.max(1));
        Ok(Writer {
            sink,
            channels,
            rate,
            conv: (0..channels).map(|_| Convert::default()).collect(),
            planes: vec![Vec::new(); channels],
            frame: Vec::new(),
            bytes: Vec::new(),
            ticks: 0,
        })
    }

    /// Write one tick: `planar` holds the channels one after another at `from` Hz.
    pub fn tick(&mut self, from: u32, planar: &[i16]) -> Result<(), WriteError> {
        let n = planar.len() / self.channels;
        for (c, (conv, plane)) in self.conv.iter_mut().zip(&mut self.planes).enumerate() {
            conv.run(from, self.rate, &planar[c * n..(c + 1) * n], plane);
        }
        let per = (self.rate / 50) as usize;
        self.frame.clear();
        for i in 0..per {
            for plane in &self.planes {
                self.frame.push(plane[i]);
            }
        }
        match &mut self.sink {
            Sink::Wav(out) => {
                self.bytes.clear();
                self.bytes
                    .extend(self.frame.iter().flat_map(|s| s.to_le_bytes()));
                out.write_all(&self.bytes)?;
            }
            Sink::Ogg(ogg) => ogg.tick(&self.frame)?,
        }
        self.ticks += 1;
        Ok(())
    }

    /// Bring what is on disk up to date (a WAV header covering every tick); an
    /// Ogg file flushes itself page by page.
    pub fn sync(&mut self) -> Result<(), WriteError> {
        if let Sink::Wav(out) = &mut self.sink {
            out.flush()?;
            wav::update(out.get_mut(), self.ticks, self.channels as u16, self.rate)?;
        }
        Ok(())
    }

    /// Finish the file; returns it with the ticks that reached the disk.
    pub fn finish(self) -> (Option<File>, u64, Option<WriteError>) {
        let (channels, rate, ticks) = (self.channels, self.rate, self.ticks);
        match self.sink {
            Sink::Wav(out) => {
                let mut file = match out.into_inner() {
                    Ok(f) => f,
                    Err(e) => {
                        // the buffered tail is lost; what reached the file is kept
                        let (err, out) = e.into_parts();
                        return (out.into_parts().0.into(), ticks, Some(err.into()));
                    }
                };
                // what reached the disk is kept and described, even after an error
                let on_disk = file
                    .metadata()
                    .map(|m| {
                        m.len().saturating_sub(wav::HEADER) / wav::tick_bytes(channels as u16, rate)
                    })
                    .unwrap_or(ticks)
                    .min(ticks);
                let err = wav::update(&mut file, on_disk, channels as u16, rate).err();
                (Some(file), on_disk, err.map(WriteError::from))
            }
            Sink::Ogg(ogg) => match ogg.finish(channels) {
                Ok(f) => (Some(f), ticks, None),
                Err(e) => (None, ticks, Some(e.into())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::goertzel::power_db;

    fn tone(rate: u32, hz: f64, n: usize, at: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (8000.0
                    * (2.0 * std::f64::consts::PI * hz * (at + i) as f64 / f64::from(rate)).sin())
                    as i16
            })
            .collect()
    }

    #[test]
    fn each_room_rate_reaches_each_file_rate_with_its_tone() {
        for (from, to, hz) in [
            (8000, 8000, 600.0),
            (8000, 16000, 600.0),
            (8000, 48000, 600.0),
            (48000, 8000, 600.0),
            (48000, 16000, 5000.0),
            (48000, 48000, 5000.0),
            // a G.722 room (16 kHz)
            (16000, 8000, 600.0),
            (16000, 16000, 5000.0),
            (16000, 48000, 5000.0),
        ] {
            let mut c = Convert::default();
            let (mut all, mut out) = (Vec::new(), Vec::new());
            let n = (from / 50) as usize;
            for k in 0..25 {
                c.run(from, to, &tone(from, hz, n, k * n), &mut out);
                assert_eq!(out.len(), (to / 50) as usize, "{from}->{to}");
                all.extend_from_slice(&out);
            }
            let tail = &all[all.len() / 2..];
            let db = power_db(tail, f64::from(to), hz);
            assert!(db > 65.0, "{from}->{to}: {db}");
        }
    }
}
