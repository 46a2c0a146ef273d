//! Sounds made off the media path for NCCO actions and call control: speech from
//! the local TTS engine, sound files (WAV, MP3, Ogg) fetched by URL or read from an
//! absolute path and decoded to 8 kHz, each kept in a small cache by text and
//! voice or by address; then levelled as Vonage's `level` asks (`loop` is the
//! same shared sound queued again). The media workers only ever receive
//! finished samples.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::media::decode::DecodeError;
use crate::media::prompt::{Sound, sound};
use crate::tts::{Tts, TtsError};
use crate::util::is_http_url;

/// Sounds kept, at most (speech and files together).
const CACHE: usize = 64;
/// A sound file is at most this large (10 minutes at 16 kHz).
const MAX_BYTES: usize = 20 << 20;
/// And at most this long.
const MAX_SECONDS: u32 = 600;
/// A fetch may take this long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Times a sound may be looped (`loop: 0`, "until stopped", is this).
pub const MAX_LOOPS: u32 = 100;

/// Why a sound could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SoundError {
    /// the TTS engine
    #[error(transparent)]
    Speech(#[from] TtsError),
    /// the file could not be fetched or read
    #[error("{0}: cannot be fetched: {1}")]
    Fetch(String, String),
    /// the server answered with an error
    #[error("{0}: HTTP {1}")]
    Status(String, u16),
    /// too large to take
    #[error("{0}: larger than 20 MiB")]
    TooLarge(String),
    /// a relative path
    #[error("{0}: a local sound file needs an absolute path")]
    Relative(String),
    /// not audio we decode
    #[error("{0}: {1}")]
    Decode(String, DecodeError),
    /// a blocking task was lost (shutdown)
    #[error("the sound was not made: {0}")]
    Lost(#[from] tokio::task::JoinError),
}

/// The sound maker: cheap to clone, shared by the answer webhook and the API.
#[derive(Clone)]
pub struct Sounds {
    client: reqwest::Client,
    cache: Arc<Mutex<HashMap<String, Sound>>>,
    tts: Arc<Tts>,
}

impl std::fmt::Debug for Sounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sounds").finish_non_exhaustive()
    }
}

impl Sounds {
    /// A maker speaking with `tts`.
    pub fn new(tts: Tts) -> Sounds {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .user_agent("caucus")
            .build()
            .unwrap_or_default();
        Sounds {
            client,
            cache: Arc::new(Mutex::new(HashMap::new())),
            tts: Arc::new(tts),
        }
    }

    fn cached(&self, key: &str) -> Option<Sound> {
        let c = match self.cache.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        c.get(key).cloned()
    }

    fn remember(&self, key: String, s: Sound) {
        let mut c = match self.cache.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        if c.len() >= CACHE {
            c.clear();
        }
        c.insert(key, s);
    }

    /// `text` (plain or SSML) spoken in the voice for `language`.
    pub async fn speech(&self, text: &str, language: &str) -> Result<Sound, SoundError> {
        let key = format!("tts\u{0}{language}\u{0}{text}");
        if let Some(s) = self.cached(&key) {
            return Ok(s);
        }
        let (tts, t, l) = (self.tts.clone(), text.to_string(), language.to_string());
        let s = tokio::task::spawn_blocking(move || tts.speak(&t, &l).map(sound)).await??;
        self.remember(key, s.clone());
        Ok(s)
    }

    /// A sound file by URL (http/https) or local path (absolute, or file://).
    pub async fn file(&self, url: &str) -> Result<Sound, SoundError> {
        if let Some(s) = self.cached(url) {
            return Ok(s);
        }
        let fetch = |e: &dyn std::fmt::Display| SoundError::Fetch(url.to_string(), e.to_string());
        let bytes = if is_http_url(url) {
            let r = self.client.get(url).send().await.map_err(|e| fetch(&e))?;
            if !r.status().is_success() {
                return Err(SoundError::Status(url.to_string(), r.status().as_u16()));
            }
            if r.content_length().is_some_and(|n| n > MAX_BYTES as u64) {
                return Err(SoundError::TooLarge(url.to_string()));
            }
            r.bytes().await.map_err(|e| fetch(&e))?.to_vec()
        } else {
            let path = url.strip_prefix("file://").unwrap_or(url).to_string();
            if !path.starts_with('/') {
                return Err(SoundError::Relative(url.to_string()));
            }
            tokio::task::spawn_blocking(move || std::fs::read(path))
                .await?
                .map_err(|e| fetch(&e))?
        };
        if bytes.len() > MAX_BYTES {
            return Err(SoundError::TooLarge(url.to_string()));
        }
        let s = tokio::task::spawn_blocking(move || {
            crate::media::decode::to_8k_mono(bytes, MAX_SECONDS).map(sound)
        })
        .await?
        .map_err(|e| SoundError::Decode(url.to_string(), e))?;
        self.remember(url.to_string(), s.clone());
        Ok(s)
    }
}

/// `s` at Vonage's `level`: −1 silent, 0 as made, 1 twice as loud (clipped).
/// Looping is the player's: the same sound queued again, shared, not copied.
pub async fn levelled(s: Sound, level: f64) -> Result<Sound, SoundError> {
    if level == 0.0 {
        return Ok(s);
    }
    Ok(tokio::task::spawn_blocking(move || at_level(&s.narrow, level)).await?)
}

fn at_level(s: &[i16], level: f64) -> Sound {
    let gain = 1.0 + level.clamp(-1.0, 1.0);
    sound(
        s.iter()
            .map(|&v| (f64::from(v) * gain).clamp(-32768.0, 32767.0) as i16)
            .collect(),
    )
}

/// Vonage's `loop` as a count of plays: 0 ("until stopped") is [`MAX_LOOPS`].
/// (An NCCO's `loop: 0` before a conversation plays once: what comes next
/// interrupts it.)
pub fn plays(loops: u32) -> u32 {
    match loops {
        0 => MAX_LOOPS,
        n => n.min(MAX_LOOPS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_plays() {
        let s = at_level(&[1000, -1000], -0.5);
        assert_eq!(&s.narrow[..], &[500, -500]);
        assert_eq!(&at_level(&[30000], 1.0).narrow[..], &[32767], "clipped");
        assert_eq!((plays(0), plays(3), plays(1000)), (MAX_LOOPS, 3, MAX_LOOPS));
    }

    #[tokio::test]
    async fn files_are_refused_clearly() {
        let m = Sounds::new(Tts::new(vec!["/nonexistent/tts".into()]));
        assert!(matches!(
            m.file("relative/x.wav").await,
            Err(SoundError::Relative(_))
        ));
        assert!(matches!(
            m.file("/nonexistent/x.wav").await,
            Err(SoundError::Fetch(..))
        ));
        assert!(matches!(
            m.speech("hello", "en-US").await,
            Err(SoundError::Speech(_))
        ));
    }
}
