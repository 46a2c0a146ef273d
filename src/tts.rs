//! Speech for an NCCO's `talk` action: a local text-to-speech engine run as a
//! subprocess (`[tts] command`, espeak-ng by default), off the media path. The
//! text goes to its standard input (never onto a command line), a WAV comes
//! back on its standard output and is decoded to 8 kHz mono. SSML tags are
//! stripped (the engine is given plain text); Vonage's language codes are
//! mapped to the engine's voice names.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Text longer than this is refused (Vonage's own limit is 1,500 characters).
pub const MAX_TEXT: usize = 3000;
/// How long the engine may take for one text.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why speech could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TtsError {
    /// the engine is not installed (or not runnable)
    #[error(
        "no text-to-speech engine: {program} could not be run ({reason}); install it (Debian: espeak-ng) or set [tts] command"
    )]
    Missing {
        /// the program named by `[tts] command`
        program: String,
        /// what running it said
        reason: String,
    },
    /// it ran and failed
    #[error("text-to-speech failed: {0}")]
    Failed(String),
    /// too long, or nothing to say
    #[error("talk text must be 1-{MAX_TEXT} characters")]
    Text,
}

/// The engine: a command line, `{voice}` standing for the voice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tts {
    command: Vec<String>,
}

impl Tts {
    /// An engine run as `command` (program first).
    pub fn new(command: Vec<String>) -> Tts {
        Tts { command }
    }

    /// `text` (SSML or plain) spoken with the voice for Vonage `language`, as
    /// 8 kHz mono samples. Blocking: run it off the async runtime.
    pub fn speak(&self, text: &str, language: &str) -> Result<Vec<i16>, TtsError> {
        let text = plain_text(text);
        if text.trim().is_empty() || text.len() > MAX_TEXT {
            return Err(TtsError::Text);
        }
        let voice = voice(language);
        let Some((program, args)) = self.command.split_first() else {
            return Err(TtsError::Failed("[tts] command is empty".into()));
        };
        let args: Vec<String> = args.iter().map(|a| a.replace("{voice}", &voice)).collect();
        let mut child = Command::new(program)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| TtsError::Missing {
                program: program.clone(),
                reason: e.to_string(),
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(text.as_bytes())
                .map_err(|e| TtsError::Failed(e.to_string()))?;
        }
        let mut wav = Vec::new();
        let start = Instant::now();
        if let Some(mut out) = child.stdout.take() {
            out.read_to_end(&mut wav)
                .map_err(|e| TtsError::Failed(e.to_string()))?;
        }
        loop {
            match child.try_wait() {
                Ok(Some(st)) if st.success() => break,
                Ok(Some(st)) => {
                    return Err(TtsError::Failed(format!("{program} exited with {st}")));
                }
                Ok(None) if start.elapsed() > TIMEOUT => {
                    let _ = child.kill();
                    return Err(TtsError::Failed(format!("{program} took over {TIMEOUT:?}")));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(TtsError::Failed(e.to_string())),
            }
        }
        streamed_wav_sizes(&mut wav);
        crate::media::decode::to_8k_mono(wav, 600).map_err(|e| TtsError::Failed(e.to_string()))
    }
}

/// A WAV written to a pipe (espeak-ng's) cannot know its length and says
/// "as long as possible" in its RIFF and data sizes; a decoder then reads past
/// the end. Write the sizes the bytes really have.
fn streamed_wav_sizes(wav: &mut [u8]) {
    if wav.len() < 12 || &wav[0..4] != b"RIFF" || &wav[8..12] != b"WAVE" {
        return;
    }
    let riff = (wav.len() - 8) as u32;
    wav[4..8].copy_from_slice(&riff.to_le_bytes());
    let mut pos = 12;
    while pos + 8 <= wav.len() {
        let len =
            u32::from_le_bytes([wav[pos + 4], wav[pos + 5], wav[pos + 6], wav[pos + 7]]) as usize;
        if &wav[pos..pos + 4] == b"data" {
            let real = (wav.len() - pos - 8) as u32;
            wav[pos + 4..pos + 8].copy_from_slice(&real.to_le_bytes());
            return;
        }
        pos += 8 + len + (len & 1);
    }
}

/// SSML (or plain text) as plain text: tags dropped, the five XML entities
/// unescaped.
pub fn plain_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    let out = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The espeak-ng voice for a Vonage language code (`en-US`, `de-DE`, …): the
/// English variants by region, other languages by their language part.
pub fn voice(language: &str) -> String {
    let l = language.trim().to_ascii_lowercase();
    if l.is_empty() {
        return "en-us".into();
    }
    if !l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') {
        return "en-us".into();
    }
    match l.as_str() {
        "en-us" | "en-gb" => l,
        "en-au" | "en-in" | "en-za" | "en-ie" | "en-nz" => "en-gb".into(),
        _ => l.split('-').next().unwrap_or("en").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssml_becomes_plain_text() {
        assert_eq!(
            plain_text("<speak>Welcome to <emphasis>the</emphasis> call &amp; more</speak>"),
            "Welcome to the call & more"
        );
        assert_eq!(plain_text("plain"), "plain");
    }

    #[test]
    fn languages_map_to_voices() {
        assert_eq!(voice("en-US"), "en-us");
        assert_eq!(voice("en-AU"), "en-gb");
        assert_eq!(voice("de-DE"), "de");
        assert_eq!(voice(""), "en-us");
        assert_eq!(voice("x; rm -rf /"), "en-us");
    }

    #[test]
    fn a_streamed_wav_gets_its_real_sizes() {
        let mut w = b"RIFF\xff\xff\xff\x7fWAVEfmt \x10\0\0\0".to_vec();
        w.extend_from_slice(&[1, 0, 1, 0, 0x40, 0x1f, 0, 0, 0x80, 0x3e, 0, 0, 2, 0, 16, 0]);
        w.extend_from_slice(b"data\xff\xff\xff\x7f");
        w.extend_from_slice(&[0u8; 100]);
        streamed_wav_sizes(&mut w);
        assert_eq!(
            u32::from_le_bytes([w[4], w[5], w[6], w[7]]) as usize,
            w.len() - 8
        );
        assert_eq!(u32::from_le_bytes([w[40], w[41], w[42], w[43]]), 100);
        assert_eq!(crate::media::decode::to_8k_mono(w, 10).unwrap().len(), 50);
    }

    #[test]
    fn a_missing_engine_is_named() {
        let t = Tts::new(vec!["/nonexistent/tts-engine".into()]);
        match t.speak("hello", "en-US") {
            Err(TtsError::Missing { program, .. }) => {
                assert_eq!(program, "/nonexistent/tts-engine")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(t.speak("  ", "en-US"), Err(TtsError::Text));
    }
}
