//! Sound files from outside the bridge (an NCCO's `stream` and `musicOnHoldUrl`,
//! announcements, speech from the TTS engine): any container and codec
//! symphonia (pure Rust, kept) reads here, WAV, MP3 and Ogg Vorbis among them,
//! decoded to 8 kHz mono 16-bit samples off the media path. Symphonia demuxes
//! Ogg Opus but has no Opus decoder: its packets go to the bridge's own
//! ([`super::opus`]), which gives mono of a mono or stereo stream. Channels are
//! averaged; the rate is converted by [`super::resample::to_8k`].

use symphonia::core::codecs::CodecParameters;
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

/// Why a sound file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// not a format or codec symphonia reads
    #[error("unsupported or malformed audio: {0}")]
    Format(String),
    /// no audio in it
    #[error("no audio track")]
    NoAudio,
    /// longer than the limit
    #[error("longer than {0} s")]
    TooLong(u32),
}

/// `bytes` (WAV, MP3, …) as 8 kHz mono, at most `max_s` seconds.
pub fn to_8k_mono(bytes: Vec<u8>, max_s: u32) -> Result<Vec<i16>, DecodeError> {
    let bad = |e: symphonia::core::errors::Error| DecodeError::Format(e.to_string());
    let mss = MediaSourceStream::new(Box::new(std::io::Cursor::new(bytes)), Default::default());
    let mut format = symphonia::default::get_probe()
        .probe(
            &Hint::new(),
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(bad)?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or(DecodeError::NoAudio)?;
    let id = track.id;
    let Some(CodecParameters::Audio(params)) = &track.codec_params else {
        return Err(DecodeError::NoAudio);
    };
    if params.codec == symphonia::core::codecs::audio::well_known::CODEC_ID_OPUS {
        let skip = track.delay.unwrap_or(0) as usize;
        return opus_packets(&mut *format, id, skip, max_s);
    }
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(bad)?;
    let (mut mono, mut rate) = (Vec::<i16>::new(), 0u32);
    let mut frame: Vec<i16> = Vec::new();
    while let Some(packet) = next(&mut *format)? {
        if packet.track_id != id {
            continue;
        }
        let buf = match decoder.decode(&packet) {
            Ok(b) => b,
            // a damaged frame is skipped, as players do
            Err(symphonia::core::errors::Error::DecodeError(_)) => continue,
            Err(e) => return Err(bad(e)),
        };
        rate = buf.spec().rate();
        let channels = buf.spec().channels().count().max(1);
        frame.clear();
        buf.copy_to_vec_interleaved(&mut frame);
        mono.extend(
            frame
                .chunks_exact(channels)
                .map(|c| (c.iter().map(|&v| i32::from(v)).sum::<i32>() / channels as i32) as i16),
        );
        if rate > 0 && mono.len() as u64 > u64::from(max_s) * u64::from(rate) {
            return Err(DecodeError::TooLong(max_s));
        }
    }
    if mono.is_empty() || rate == 0 {
        return Err(DecodeError::NoAudio);
    }
    Ok(super::resample::to_8k(&mono, rate))
}

/// The next packet; None at the end, also at an end without its end-of-stream
/// mark (a recording cut by a crash ends so).
fn next(
    format: &mut dyn symphonia::core::formats::FormatReader,
) -> Result<Option<symphonia::core::packet::Packet>, DecodeError> {
    match format.next_packet() {
        Ok(p) => Ok(p),
        Err(symphonia::core::errors::Error::IoError(e))
            if e.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            Ok(None)
        }
        Err(e) => Err(DecodeError::Format(e.to_string())),
    }
}

/// The Opus packets of track `id` as 8 kHz mono, the first `skip` samples (at
/// 48 kHz: the stream's pre-skip) dropped.
fn opus_packets(
    format: &mut dyn symphonia::core::formats::FormatReader,
    id: u32,
    skip: usize,
    max_s: u32,
) -> Result<Vec<i16>, DecodeError> {
    let mut dec = super::opus::Decoder::new().map_err(|e| DecodeError::Format(e.to_string()))?;
    let mut pcm = Vec::<i16>::new();
    // the longest Opus packet is 120 ms
    let mut frame = vec![0i16; 5760];
    while let Some(packet) = next(&mut *format)? {
        if packet.track_id != id {
            continue;
        }
        // a damaged packet is skipped, as players do
        if let Ok(n) = dec.decode(Some(&packet.data), &mut frame) {
            pcm.extend_from_slice(&frame[..n]);
        }
        if pcm.len() as u64 > u64::from(max_s) * 48000 {
            return Err(DecodeError::TooLong(max_s));
        }
    }
    let pcm = pcm.get(skip..).unwrap_or_default();
    if pcm.is_empty() {
        return Err(DecodeError::NoAudio);
    }
    Ok(super::resample::to_8k(pcm, 48000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
        let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut b = Vec::new();
        b.extend_from_slice(b"RIFF");
        b.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        b.extend_from_slice(&16u32.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&channels.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&(rate * u32::from(channels) * 2).to_le_bytes());
        b.extend_from_slice(&(channels * 2).to_le_bytes());
        b.extend_from_slice(&16u16.to_le_bytes());
        b.extend_from_slice(b"data");
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(&data);
        b
    }

    #[test]
    fn a_stereo_44k_wav_comes_out_as_8k_mono_with_its_tone() {
        let n = 44_100;
        let s: Vec<i16> = (0..n)
            .flat_map(|i| {
                let v = (6000.0 * (2.0 * std::f64::consts::PI * 600.0 * i as f64 / 44_100.0).sin())
                    as i16;
                [v, v]
            })
            .collect();
        let out = to_8k_mono(wav(44_100, 2, &s), 10).unwrap();
        assert!((out.len() as i64 - 8000).abs() <= 2, "{}", out.len());
        let db = crate::media::goertzel::power_db(&out[500..7500], 8000.0, 600.0);
        assert!(db > 65.0, "{db}");
    }

    #[test]
    fn an_ogg_vorbis_file_comes_out_as_8k_mono_with_its_tone() {
        // 1 s of 600 Hz at 22.05 kHz, written by sox
        let ogg = include_bytes!("../../tests/data/tone-600hz.ogg").to_vec();
        let out = to_8k_mono(ogg, 10).unwrap();
        assert!((out.len() as i64 - 8000).abs() <= 200, "{}", out.len());
        let db = crate::media::goertzel::power_db(&out[1000..7000], 8000.0, 600.0);
        assert!(db > 60.0, "{db}");
    }

    #[test]
    fn junk_and_overlong_files_are_refused() {
        assert!(matches!(
            to_8k_mono(b"not audio at all".to_vec(), 10),
            Err(DecodeError::Format(_))
        ));
        let long = vec![0i16; 8000 * 3];
        assert_eq!(
            to_8k_mono(wav(8000, 1, &long), 2),
            Err(DecodeError::TooLong(2))
        );
    }
}
