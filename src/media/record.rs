//! Recordings: a room's mix or one participant's own audio, written as 8 kHz mono
//! 16-bit WAV. The media worker hands each 20 ms frame to a writer thread through
//! a bounded channel of fixed-size frames, so the mixing tick never touches the disk
//! and never allocates; a slow disk costs dropped frames (counted), not late ticks.
//!
//! Crash safety: the RIFF and data sizes in the header are rewritten every second,
//! so a file cut short by a crash of the process is a valid WAV of all but the last
//! second. A write error (a full disk) ends the recording with an error report; the
//! call goes on.
//!
//! Beside each `ID.wav` a sidecar `ID.json` ([`Meta`]) says whose it is (room,
//! participant), when it started, and how it ended; it is written when the
//! recording starts and replaced when it ends. A recording whose sidecar still
//! says "recording" at the next start was cut by a crash: [`recover`] closes its
//! WAV (header from the file's length) and reports it. [`list`] is the catalogue
//! `GET /v1/recordings` serves.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use serde::{Deserialize, Serialize};

use crate::ids::LegId;
use crate::util::rfc3339;

use super::contract::{MediaEvent, RecordingEnd};
use super::resample::Downsampler;

/// Samples per frame: 20 ms at 8 kHz.
pub const FRAME: usize = 160;
/// Frames buffered between the tick and the disk (4 s).
const QUEUE: usize = 200;
/// Header sizes are brought up to date this often (frames).
const SYNC_EVERY: u32 = 50;

/// One 20 ms frame of a recording.
pub type Frame = [i16; FRAME];

/// The tick's end of a recording.
pub struct RecordSink {
    /// recording id
    pub id: String,
    /// whose audio: the room mix (None) or one leg's own stream
    pub leg: Option<LegId>,
    /// brings a 48 kHz room to the file's 8 kHz
    pub down: Downsampler,
    tx: mpsc::SyncSender<Frame>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl RecordSink {
    /// Queue one frame; false when the writer has stopped (error) and the sink
    /// should be dropped.
    pub fn push(&self, frame: &Frame) -> bool {
        match self.tx.try_send(*frame) {
            Ok(()) => true,
            Err(mpsc::TrySendError::Full(_)) => {
                self.dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                true
            }
            Err(mpsc::TrySendError::Disconnected(_)) => false,
        }
    }
}

fn header(data_bytes: u32) -> [u8; 44] {
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(36u32.saturating_add(data_bytes)).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
    h[22..24].copy_from_slice(&1u16.to_le_bytes()); // mono
    h[24..28].copy_from_slice(&8000u32.to_le_bytes());
    h[28..32].copy_from_slice(&16000u32.to_le_bytes()); // byte rate
    h[32..34].copy_from_slice(&2u16.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_bytes.to_le_bytes());
    h
}

/// Where a recording stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// being written
    Recording,
    /// stopped as asked, or with its call or room
    Completed,
    /// ended by an error (the disk); what was written is kept
    Failed,
    /// cut by a crash of the bridge, closed at its next start
    Recovered,
}

/// A recording's sidecar: whose audio, when, and how it ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Meta {
    /// recording id (the file name)
    pub id: String,
    /// room
    pub room: String,
    /// one participant's own audio (their leg id), or the room's mix (none)
    pub participant: Option<u64>,
    /// RFC 3339
    pub started_at: String,
    /// RFC 3339, once it ended
    pub ended_at: Option<String>,
    /// state
    pub state: State,
    /// audio length
    pub duration_ms: u64,
    /// WAV file size
    pub size: u64,
    /// why it failed
    pub error: Option<String>,
}

fn meta_path(wav: &Path) -> PathBuf {
    wav.with_extension("json")
}

/// Write a sidecar whole (a temporary file renamed over it), mode 0600.
fn write_meta(wav: &Path, meta: &Meta) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = meta_path(wav);
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&serde_json::to_vec(meta).map_err(io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)
}

fn read_meta(path: &Path) -> Option<Meta> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Frames a WAV file of `len` bytes holds whole.
fn frames_in(len: u64) -> u64 {
    len.saturating_sub(44) / (FRAME as u64 * 2)
}

/// Close the recordings a crash cut short in `dir`: each WAV gets the header its
/// length calls for (a torn last frame is cut) and its sidecar says "recovered".
/// Returns them, to be reported.
pub fn recover(dir: &Path) -> Vec<Meta> {
    let mut out = Vec::new();
    for wav_meta in sidecars(dir) {
        let (wav, mut meta) = wav_meta;
        if meta.state != State::Recording {
            continue;
        }
        let fixed = (|| -> io::Result<(u64, std::time::SystemTime)> {
            let mut f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&wav)?;
            let m = f.metadata()?;
            let frames = frames_in(m.len());
            f.set_len(44 + frames * FRAME as u64 * 2)?;
            update_header(&mut f, frames)?;
            f.sync_all()?;
            Ok((frames, m.modified()?))
        })();
        match fixed {
            Ok((frames, modified)) => {
                meta.state = State::Recovered;
                meta.duration_ms = frames * 20;
                meta.size = 44 + frames * FRAME as u64 * 2;
                meta.ended_at = Some(rfc3339(modified));
            }
            Err(e) => {
                meta.state = State::Failed;
                meta.error = Some(format!("cut by a crash, and unreadable: {e}"));
                meta.ended_at = Some(rfc3339(std::time::SystemTime::now()));
            }
        }
        if let Err(e) = write_meta(&wav, &meta) {
            tracing::warn!(recording = %meta.id, error = %e, "cannot update a recovered recording's sidecar");
        }
        out.push(meta);
    }
    out
}

/// Every recording in `dir` with its sidecar (one being written shows its length
/// so far), oldest first.
pub fn list(dir: &Path) -> Vec<Meta> {
    let mut v: Vec<Meta> = sidecars(dir)
        .into_iter()
        .map(|(wav, mut m)| {
            if m.state == State::Recording
                && let Ok(md) = std::fs::metadata(&wav)
            {
                m.size = md.len();
                m.duration_ms = frames_in(md.len()) * 20;
            }
            m
        })
        .collect();
    v.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
    v
}

/// (WAV path, sidecar) of every recording in `dir`.
fn sidecars(dir: &Path) -> Vec<(PathBuf, Meta)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| {
            let meta = read_meta(&p)?;
            let wav = p.with_extension("wav");
            // a sidecar names its own file only
            (wav.file_stem().and_then(|s| s.to_str()) == Some(meta.id.as_str()))
                .then_some((wav, meta))
        })
        .collect()
}

/// Create the file (mode 0600, never an existing one) and its sidecar in the
/// calling thread, so that a bad directory is reported at once, and start its
/// writer thread.
pub fn start(
    id: String,
    room: &str,
    leg: Option<LegId>,
    path: &Path,
    events: mpsc::Sender<(LegId, MediaEvent)>,
) -> io::Result<RecordSink> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(&header(0))?;
    let mut meta = Meta {
        id: id.clone(),
        room: room.to_string(),
        participant: leg.map(|l| l.0),
        started_at: rfc3339(std::time::SystemTime::now()),
        ended_at: None,
        state: State::Recording,
        duration_ms: 0,
        size: 44,
        error: None,
    };
    write_meta(path, &meta)?;
    let (tx, rx) = mpsc::sync_channel::<Frame>(QUEUE);
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = dropped.clone();
    let path = path.to_path_buf();
    let rid = id.clone();
    std::thread::Builder::new()
        .name("recorder".into())
        .spawn(move || {
            let (frames, error) = write_frames(&mut file, &rx);
            drop(rx);
            let data = frames.saturating_mul((FRAME * 2) as u64);
            meta.state = if error.is_some() {
                State::Failed
            } else {
                State::Completed
            };
            meta.duration_ms = frames * 20;
            meta.size = data + 44;
            meta.ended_at = Some(rfc3339(std::time::SystemTime::now()));
            meta.error = error.clone();
            if let Err(e) = write_meta(&path, &meta) {
                tracing::warn!(recording = %meta.id, error = %e, "cannot update the recording's sidecar");
            }
            let end = RecordingEnd {
                id: rid,
                path,
                duration_ms: frames * 20,
                bytes: data + 44,
                dropped_frames: counter.load(std::sync::atomic::Ordering::Relaxed),
                error,
            };
            let _ = events.send((LegId(0), MediaEvent::RecordingDone(Box::new(end))));
        })?;
    Ok(RecordSink {
        id,
        leg,
        down: Downsampler::default(),
        tx,
        dropped,
    })
}

/// Write frames until the sender goes away (stopped) or the disk fails.
fn write_frames(file: &mut File, rx: &mpsc::Receiver<Frame>) -> (u64, Option<String>) {
    let mut frames: u64 = 0;
    let mut since_sync = 0u32;
    let mut bytes = [0u8; FRAME * 2];
    let mut out = io::BufWriter::with_capacity(64 * 1024, &mut *file);
    let mut error = None;
    while let Ok(frame) = rx.recv() {
        for (b, s) in bytes.chunks_exact_mut(2).zip(frame.iter()) {
            b.copy_from_slice(&s.to_le_bytes());
        }
        if let Err(e) = out.write_all(&bytes) {
            error = Some(e.to_string());
            break;
        }
        frames += 1;
        since_sync += 1;
        if since_sync >= SYNC_EVERY {
            since_sync = 0;
            if let Err(e) = out.flush() {
                error = Some(e.to_string());
                break;
            }
            if let Err(e) = update_header(out.get_mut(), frames) {
                error = Some(e.to_string());
                break;
            }
        }
    }
    if error.is_none()
        && let Err(e) = out.flush()
    {
        error = Some(e.to_string());
    }
    drop(out);
    // what reached the disk is kept and described, even after an error
    let written = file
        .metadata()
        .map(|m| m.len().saturating_sub(44) / (FRAME as u64 * 2))
        .unwrap_or(frames)
        .min(frames);
    let _ = update_header(file, written);
    let _ = file.sync_all();
    (written, error)
}

fn update_header(file: &mut File, frames: u64) -> io::Result<()> {
    let data = u32::try_from(frames * (FRAME as u64) * 2).unwrap_or(u32::MAX - 36);
    let pos = file.stream_position()?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&header(data))?;
    file.seek(SeekFrom::Start(pos))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("caucus-rec-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn writes_a_valid_wav_and_reports_its_end() {
        let dir = tmp("ok");
        let path = dir.join("a.wav");
        let (tx, rx) = mpsc::channel();
        let sink = start("a".into(), "r", None, &path, tx).unwrap();
        let mut f = [0i16; FRAME];
        for (i, s) in f.iter_mut().enumerate() {
            *s = i as i16;
        }
        for _ in 0..120 {
            assert!(sink.push(&f));
        }
        drop(sink);
        let (_, ev) = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        let MediaEvent::RecordingDone(end) = ev else {
            panic!("{ev:?}")
        };
        assert_eq!(end.error, None);
        assert_eq!(end.duration_ms, 2400);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, end.bytes);
        let samples = crate::media::prompt::parse_wav(&bytes, "a.wav").unwrap();
        assert_eq!(samples.len(), 120 * FRAME);
        assert_eq!(samples[161], 1);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // never over an existing file
        let (tx, _rx) = mpsc::channel();
        assert!(start("a".into(), "r", None, &path, tx).is_err());
    }

    #[test]
    fn header_is_current_while_recording() {
        let dir = tmp("live");
        let path = dir.join("b.wav");
        let (tx, _rx) = mpsc::channel();
        let sink = start("b".into(), "r", None, &path, tx).unwrap();
        for _ in 0..(SYNC_EVERY * 2) {
            sink.push(&[7; FRAME]);
        }
        // a crash now leaves a file whose header already covers the synced part
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let b = std::fs::read(&path).unwrap();
            if let Ok(s) = crate::media::prompt::parse_wav(&b, "b.wav")
                && s.len() >= FRAME * SYNC_EVERY as usize
            {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "header never updated");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        drop(sink);
    }

    #[test]
    fn a_recording_cut_by_a_crash_is_closed_and_listed_at_the_next_start() {
        let dir = tmp("crash");
        let path = dir.join("c.wav");
        let (tx, rx) = mpsc::channel();
        let sink = start("c".into(), "room1", Some(LegId(4)), &path, tx).unwrap();
        for _ in 0..10 {
            sink.push(&[3; FRAME]);
        }
        drop(sink);
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        let done = list(&dir);
        assert_eq!(done.len(), 1);
        assert_eq!(
            (done[0].state, done[0].duration_ms),
            (State::Completed, 200)
        );
        assert_eq!(done[0].participant, Some(4));
        assert!(
            recover(&dir).is_empty(),
            "a completed recording was recovered"
        );
        // the state a kill -9 leaves: the sidecar still says "recording", the
        // header is a second behind, the last frame is torn
        let mut meta = done[0].clone();
        meta.state = State::Recording;
        meta.id = "d".into();
        let wav = dir.join("d.wav");
        let mut bytes = header(0).to_vec();
        bytes.extend(std::iter::repeat_n(5u8, 75 * FRAME * 2 + 17));
        std::fs::write(&wav, &bytes).unwrap();
        write_meta(&wav, &meta).unwrap();
        let got = recover(&dir);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].state, got[0].duration_ms), (State::Recovered, 1500));
        let samples =
            crate::media::prompt::parse_wav(&std::fs::read(&wav).unwrap(), "d.wav").unwrap();
        assert_eq!(samples.len(), 75 * FRAME);
        assert!(recover(&dir).is_empty(), "recovered twice");
        let all = list(&dir);
        assert_eq!(
            all.iter().map(|m| m.id.as_str()).collect::<Vec<_>>().len(),
            2
        );
        assert!(
            all.iter()
                .any(|m| m.id == "d" && m.state == State::Recovered && m.room == "room1")
        );
    }

    #[test]
    fn a_full_disk_ends_the_recording_with_an_error() {
        if !Path::new("/dev/full").exists() {
            return;
        }
        // /dev/full cannot be created anew; open it the way start() writes
        let file = std::fs::OpenOptions::new().write(true).open("/dev/full");
        let Ok(mut file) = file else { return };
        let (ftx, frx) = mpsc::sync_channel::<Frame>(QUEUE);
        let t = std::thread::spawn(move || write_frames(&mut file, &frx));
        for _ in 0..1000 {
            if ftx.send([1; FRAME]).is_err() {
                break;
            }
        }
        drop(ftx);
        let (_, error) = t.join().unwrap();
        assert!(error.is_some());
    }
}
