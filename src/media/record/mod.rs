//! Recordings: a room's mix, one participant's own audio, or their channels
//! apart (one per participant; or what one participant says and what it hears),
//! written as WAV at 8, 16 or 48 kHz or as Ogg Opus. The media worker hands each
//! tick's samples, at the room's rate, to a writer thread in a buffer taken
//! from a pool the writer refills, so the mixing tick never touches the disk,
//! never resamples or encodes for a file, and never allocates; a slow disk
//! costs dropped ticks (counted), not late ticks.
//!
//! Crash safety: a WAV header's sizes are rewritten every second and an Ogg
//! page is closed every second, so a file cut short by a crash of the process
//! plays to all but its last second. A write error (a full disk) ends the
//! recording with an error report; the call goes on.
//!
//! Beside each `ID.wav` or `ID.ogg` a sidecar `ID.json` ([`Meta`]) says whose
//! it is (room, participant, which channel holds whom), when it started, and
//! how it ended; it is written when the recording starts, when a channel gets
//! its participant, and when it ends. A recording whose sidecar still says
//! "recording" at the next start was cut by a crash: [`recover`] closes its
//! file and reports it. [`list`] is the catalogue `GET /v1/recordings` serves.

mod ogg;
mod wav;
mod writer;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use serde::{Deserialize, Serialize};

use crate::ids::LegId;
use crate::util::rfc3339;

use super::contract::{MediaEvent, RecordChannels, RecordFormat, RecordSpec, RecordingEnd};

/// Ticks buffered between the media worker and the disk (4 s).
const QUEUE: usize = 200;
/// Header sizes are brought up to date, and channel assignments written to
/// the sidecar, this often (ticks).
const SYNC_EVERY: u32 = 50;
/// Samples per channel of the largest tick (20 ms at 48 kHz).
const MAX_TICK: usize = 960;

/// What the worker puts in a recording's channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// one channel: the room's mix (no leg) or the leg's own audio
    Mix,
    /// one channel per participant of the room
    Split,
    /// the leg's own audio, then what it hears
    Duplex,
}

/// One tick for the writer: the channels one after another at `rate`.
struct Tick {
    rate: u32,
    buf: Vec<i16>,
}

/// The worker's end of a recording.
pub struct RecordSink {
    /// recording id
    pub id: String,
    /// whose audio: the room (None) or one leg
    pub leg: Option<LegId>,
    layout: Layout,
    /// split: the leg each channel holds, in order of arrival
    tracks: Vec<Option<LegId>>,
    /// the same, for the writer's sidecar (leg id + 1; 0 for a free channel)
    shared: Arc<[AtomicU64]>,
    tx: mpsc::SyncSender<Tick>,
    pool: mpsc::Receiver<Vec<i16>>,
    dropped: Arc<AtomicU64>,
}

/// The writer has stopped (an error it has reported): drop the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

impl RecordSink {
    /// What goes in the channels.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// A split recording's channels and the leg each holds.
    pub fn tracks(&self) -> &[Option<LegId>] {
        &self.tracks
    }

    /// Give `leg` (newly in the room) the first free channel of a split
    /// recording; when every channel is taken it is not recorded apart.
    pub fn assign(&mut self, leg: LegId) {
        if self.layout != Layout::Split || self.tracks.contains(&Some(leg)) {
            return;
        }
        if let Some(c) = self.tracks.iter().position(Option::is_none) {
            self.tracks[c] = Some(leg);
            self.shared[c].store(leg.0 + 1, Ordering::Relaxed);
        }
    }

    /// An empty buffer for this tick, or None when every buffer is queued for
    /// the disk (the tick is dropped, and counted).
    pub fn buffer(&mut self) -> Result<Option<Vec<i16>>, Stopped> {
        match self.pool.try_recv() {
            Ok(mut b) => {
                b.clear();
                Ok(Some(b))
            }
            Err(mpsc::TryRecvError::Empty) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
            Err(mpsc::TryRecvError::Disconnected) => Err(Stopped),
        }
    }

    /// Queue a tick filled from [`RecordSink::buffer`]: the channels one after
    /// another, each `rate / 50` samples.
    pub fn push(&mut self, rate: u32, buf: Vec<i16>) -> Result<(), Stopped> {
        // as many buffers as queue places: a full queue cannot happen
        self.tx.try_send(Tick { rate, buf }).map_err(|_| Stopped)
    }
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

/// Which participant's audio a channel holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Track {
    /// channel, from 0
    pub channel: u16,
    /// participant (leg id)
    pub participant: u64,
    /// `spoken` (what the participant says) or `heard` (what it hears)
    pub audio: String,
}

fn default_rate() -> u32 {
    8000
}

fn one() -> u16 {
    1
}

/// A recording's sidecar: whose audio, how it is laid out, when, and how it
/// ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Meta {
    /// recording id (the file name)
    pub id: String,
    /// room
    pub room: String,
    /// one participant's own audio (their leg id), or the room's (none)
    pub participant: Option<u64>,
    /// `wav` or `ogg`
    #[serde(default)]
    pub format: RecordFormat,
    /// samples per second
    #[serde(default = "default_rate")]
    pub sample_rate: u32,
    /// channels in the file
    #[serde(default = "one")]
    pub channels: u16,
    /// what each channel of a split recording holds
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tracks: Vec<Track>,
    /// RFC 3339
    pub started_at: String,
    /// RFC 3339, once it ended
    pub ended_at: Option<String>,
    /// state
    pub state: State,
    /// audio length
    pub duration_ms: u64,
    /// file size
    pub size: u64,
    /// why it failed
    pub error: Option<String>,
}

impl Meta {
    /// The audio file beside the sidecar at `json`.
    fn audio(&self, json: &Path) -> PathBuf {
        json.with_extension(self.format.ext())
    }
}

/// Write a sidecar whole (a temporary file renamed over it), mode 0600.
fn write_meta(audio: &Path, meta: &Meta) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = audio.with_extension("json");
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

/// The length of a file still being written, from its size.
fn ticks_so_far(meta: &Meta, len: u64) -> u64 {
    match meta.format {
        RecordFormat::Wav => {
            len.saturating_sub(wav::HEADER) / wav::tick_bytes(meta.channels, meta.sample_rate)
        }
        // Opus packets vary in size; a second of 2-channel Opus is ~8 kB
        RecordFormat::Ogg => 0,
    }
}

/// Close the recordings a crash cut short in `dir`: each file is cut to what
/// is whole (a WAV's header is made to cover it) and its sidecar says
/// "recovered". Returns them, to be reported.
pub fn recover(dir: &Path) -> Vec<Meta> {
    let mut out = Vec::new();
    for (audio, mut meta) in sidecars(dir) {
        if meta.state != State::Recording {
            continue;
        }
        let fixed = (|| -> io::Result<(u64, std::time::SystemTime)> {
            let mut f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&audio)?;
            let modified = f.metadata()?.modified()?;
            let ticks = match meta.format {
                RecordFormat::Wav => wav::recover(&mut f)?,
                RecordFormat::Ogg => ogg::recover(&mut f)?,
            };
            f.sync_all()?;
            Ok((ticks, modified))
        })();
        match fixed {
            Ok((ticks, modified)) => {
                meta.state = State::Recovered;
                meta.duration_ms = ticks * 20;
                meta.size = std::fs::metadata(&audio).map(|m| m.len()).unwrap_or(0);
                meta.ended_at = Some(rfc3339(modified));
            }
            Err(e) => {
                meta.state = State::Failed;
                meta.error = Some(format!("cut by a crash, and unreadable: {e}"));
                meta.ended_at = Some(rfc3339(std::time::SystemTime::now()));
            }
        }
        if let Err(e) = write_meta(&audio, &meta) {
            tracing::warn!(recording = %meta.id, error = %e, "cannot update a recovered recording's sidecar");
        }
        out.push(meta);
    }
    out
}

/// Every recording in `dir` with its sidecar (one being written shows its
/// length so far), oldest first.
pub fn list(dir: &Path) -> Vec<Meta> {
    let mut v: Vec<Meta> = sidecars(dir)
        .into_iter()
        .map(|(audio, mut m)| {
            if m.state == State::Recording
                && let Ok(md) = std::fs::metadata(&audio)
            {
                m.size = md.len();
                m.duration_ms = ticks_so_far(&m, md.len()) * 20;
            }
            m
        })
        .collect();
    v.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
    v
}

/// The sidecar of recording `id` in `dir`, and its audio file.
pub fn find(dir: &Path, id: &str) -> Option<(PathBuf, Meta)> {
    let json = dir.join(format!("{id}.json"));
    let meta = read_meta(&json)?;
    (meta.id == id).then(|| (meta.audio(&json), meta))
}

/// (audio path, sidecar) of every recording in `dir`.
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
            let audio = meta.audio(&p);
            // a sidecar names its own file only
            (audio.file_stem().and_then(|s| s.to_str()) == Some(meta.id.as_str()))
                .then_some((audio, meta))
        })
        .collect()
}

/// Create the file (mode 0600, never an existing one; its extension is the
/// format's) and its sidecar in the calling thread, so that a bad directory is
/// reported at once, and start its writer thread.
pub fn start(
    id: String,
    room: &str,
    leg: Option<LegId>,
    path: &Path,
    spec: RecordSpec,
    events: mpsc::Sender<(LegId, MediaEvent)>,
) -> io::Result<RecordSink> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = path.with_extension(spec.format.ext());
    let rate = match spec.format {
        RecordFormat::Ogg => 48000,
        RecordFormat::Wav => spec.rate,
    };
    let channels = spec.channel_count(leg.is_some());
    let layout = match (spec.channels, leg) {
        (RecordChannels::Mix, _) => Layout::Mix,
        (RecordChannels::Split { .. }, Some(_)) => Layout::Duplex,
        (RecordChannels::Split { .. }, None) => Layout::Split,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    if spec.format == RecordFormat::Wav {
        file.write_all(&wav::header(0, channels, rate))?;
    }
    let tracks = match (layout, leg) {
        (Layout::Duplex, Some(l)) => vec![
            Track {
                channel: 0,
                participant: l.0,
                audio: "spoken".into(),
            },
            Track {
                channel: 1,
                participant: l.0,
                audio: "heard".into(),
            },
        ],
        _ => Vec::new(),
    };
    let mut meta = Meta {
        id: id.clone(),
        room: room.to_string(),
        participant: leg.map(|l| l.0),
        format: spec.format,
        sample_rate: rate,
        channels,
        tracks,
        started_at: rfc3339(std::time::SystemTime::now()),
        ended_at: None,
        state: State::Recording,
        duration_ms: 0,
        size: if spec.format == RecordFormat::Wav {
            wav::HEADER
        } else {
            0
        },
        error: None,
    };
    write_meta(&path, &meta)?;
    let serial = u32::from_str_radix(id.get(..8).unwrap_or("0"), 16).unwrap_or(1);
    let mut w =
        writer::Writer::new(file, spec.format, channels, rate, serial).map_err(io::Error::other)?;
    let (tx, rx) = mpsc::sync_channel::<Tick>(QUEUE);
    let (pool_tx, pool) = mpsc::sync_channel::<Vec<i16>>(QUEUE);
    for _ in 0..QUEUE {
        let _ = pool_tx.try_send(Vec::with_capacity(MAX_TICK * usize::from(channels)));
    }
    let dropped = Arc::new(AtomicU64::new(0));
    let counter = dropped.clone();
    let shared: Arc<[AtomicU64]> = (0..channels).map(|_| AtomicU64::new(0)).collect();
    let assigned = shared.clone();
    let split = layout == Layout::Split;
    let rid = id.clone();
    std::thread::Builder::new()
        .name("recorder".into())
        .spawn(move || {
            let mut seen = 0usize;
            let mut error = None;
            let mut since_sync = 0u32;
            while let Ok(t) = rx.recv() {
                let r = w.tick(t.rate, &t.buf);
                let _ = pool_tx.try_send(t.buf);
                if let Err(e) = r {
                    error = Some(e.to_string());
                    break;
                }
                since_sync += 1;
                if since_sync >= SYNC_EVERY {
                    since_sync = 0;
                    if let Err(e) = w.sync() {
                        error = Some(e.to_string());
                        break;
                    }
                    if split {
                        seen = note_tracks(&assigned, seen, &mut meta, &path);
                    }
                }
            }
            drop(rx);
            drop(pool_tx);
            if split {
                note_tracks(&assigned, seen, &mut meta, &path);
            }
            let (file, ticks, end_error) = w.finish();
            let error = error.or(end_error.map(|e| e.to_string()));
            if let Some(f) = file {
                let _ = f.sync_all();
            }
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            meta.state = if error.is_some() {
                State::Failed
            } else {
                State::Completed
            };
            meta.duration_ms = ticks * 20;
            meta.size = size;
            meta.ended_at = Some(rfc3339(std::time::SystemTime::now()));
            meta.error = error.clone();
            if let Err(e) = write_meta(&path, &meta) {
                tracing::warn!(recording = %meta.id, error = %e, "cannot update the recording's sidecar");
            }
            let end = RecordingEnd {
                id: rid,
                path,
                duration_ms: ticks * 20,
                bytes: size,
                dropped_frames: counter.load(Ordering::Relaxed),
                error,
            };
            let _ = events.send((LegId(0), MediaEvent::RecordingDone(Box::new(end))));
        })?;
    Ok(RecordSink {
        id,
        leg,
        layout,
        tracks: vec![None; if split { usize::from(channels) } else { 0 }],
        shared,
        tx,
        pool,
        dropped,
    })
}

/// Write the channels given participants since the last look into the sidecar;
/// returns how many channels are taken now.
fn note_tracks(assigned: &[AtomicU64], seen: usize, meta: &mut Meta, path: &Path) -> usize {
    let taken = assigned
        .iter()
        .take_while(|a| a.load(Ordering::Relaxed) != 0)
        .count();
    if taken > seen {
        meta.tracks = assigned[..taken]
            .iter()
            .enumerate()
            .map(|(c, a)| Track {
                channel: c as u16,
                participant: a.load(Ordering::Relaxed) - 1,
                audio: "spoken".into(),
            })
            .collect();
        if let Err(e) = write_meta(path, meta) {
            tracing::warn!(recording = %meta.id, error = %e, "cannot update the recording's sidecar");
        }
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::goertzel::power_db;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("caucus-rec-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn tone(rate: u32, hz: f64, at: usize) -> Vec<i16> {
        let n = (rate / 50) as usize;
        (0..n)
            .map(|i| {
                (8000.0
                    * (2.0 * std::f64::consts::PI * hz * (at + i) as f64 / f64::from(rate)).sin())
                    as i16
            })
            .collect()
    }

    /// Push `ticks` ticks whose channel c holds `hz[c]` at `rate`.
    fn feed(sink: &mut RecordSink, rate: u32, hz: &[f64], ticks: usize) {
        let n = (rate / 50) as usize;
        for k in 0..ticks {
            let mut b = loop {
                match sink.buffer().unwrap() {
                    Some(b) => break b,
                    None => std::thread::sleep(std::time::Duration::from_millis(1)),
                }
            };
            for &f in hz {
                b.extend_from_slice(&tone(rate, f, k * n));
            }
            sink.push(rate, b).unwrap();
        }
    }

    fn done(rx: &mpsc::Receiver<(LegId, MediaEvent)>) -> Box<RecordingEnd> {
        let (_, ev) = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        let MediaEvent::RecordingDone(end) = ev else {
            panic!("{ev:?}")
        };
        end
    }

    /// A WAV file's channels apart.
    fn channels_of(bytes: &[u8]) -> (u32, Vec<Vec<i16>>) {
        let (ch, rate) = wav::layout(bytes).unwrap();
        let samples: Vec<i16> = bytes[44..]
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        let ch = usize::from(ch);
        let planes = (0..ch)
            .map(|c| samples.iter().skip(c).step_by(ch).copied().collect())
            .collect();
        (rate, planes)
    }

    #[test]
    fn writes_a_valid_wav_and_reports_its_end() {
        let dir = tmp("ok");
        let path = dir.join("a.wav");
        let (tx, rx) = mpsc::channel();
        let mut sink = start("a".into(), "r", None, &path, RecordSpec::default(), tx).unwrap();
        feed(&mut sink, 8000, &[600.0], 120);
        drop(sink);
        let end = done(&rx);
        assert_eq!(end.error, None);
        assert_eq!(end.duration_ms, 2400);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, end.bytes);
        let samples = crate::media::prompt::parse_wav(&bytes, "a.wav").unwrap();
        assert_eq!(samples.len(), 120 * 160);
        assert!(power_db(&samples[8000..16000], 8000.0, 600.0) > 65.0);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // never over an existing file
        let (tx, _rx) = mpsc::channel();
        assert!(start("a".into(), "r", None, &path, RecordSpec::default(), tx).is_err());
    }

    #[test]
    fn a_wideband_room_is_written_at_each_rate_asked_and_split_into_channels() {
        let dir = tmp("split");
        for rate in [8000, 16000, 48000] {
            let path = dir.join(format!("s{rate}.wav"));
            let (tx, rx) = mpsc::channel();
            let spec = RecordSpec {
                format: RecordFormat::Wav,
                rate,
                channels: RecordChannels::Split { max: 3 },
            };
            let mut sink = start(format!("s{rate}"), "r", None, &path, spec, tx).unwrap();
            sink.assign(LegId(7));
            sink.assign(LegId(9));
            sink.assign(LegId(7));
            assert_eq!(sink.tracks(), &[Some(LegId(7)), Some(LegId(9)), None]);
            // the room's rate changes under the recording (an Opus leg came)
            feed(&mut sink, 8000, &[500.0, 900.0, 0.0], 50);
            feed(&mut sink, 48000, &[500.0, 900.0, 0.0], 50);
            drop(sink);
            let end = done(&rx);
            assert_eq!((end.error.as_deref(), end.duration_ms), (None, 2000));
            let (got_rate, planes) = channels_of(&std::fs::read(&path).unwrap());
            assert_eq!((got_rate, planes.len()), (rate, 3));
            let r = f64::from(rate);
            let per = (rate / 50) as usize;
            for half in [10..40, 60..90] {
                let span = half.start * per..half.end * per;
                let p = |c: usize, hz| power_db(&planes[c][span.clone()], r, hz);
                assert!(
                    p(0, 500.0) > 65.0 && p(0, 900.0) < 30.0,
                    "{rate}: {}",
                    p(0, 900.0)
                );
                assert!(p(1, 900.0) > 65.0 && p(1, 500.0) < 30.0, "{rate}");
                assert!(p(2, 500.0) < 30.0, "{rate}");
            }
            let meta = find(&dir, &format!("s{rate}")).unwrap().1;
            assert_eq!(meta.channels, 3);
            assert_eq!(
                meta.tracks
                    .iter()
                    .map(|t| t.participant)
                    .collect::<Vec<_>>(),
                vec![7, 9]
            );
        }
    }

    #[test]
    fn an_ogg_opus_recording_holds_the_tone() {
        let dir = tmp("ogg");
        let path = dir.join("o.wav");
        let (tx, rx) = mpsc::channel();
        let spec = RecordSpec {
            format: RecordFormat::Ogg,
            rate: 48000,
            channels: RecordChannels::Mix,
        };
        let mut sink = start("o".into(), "r", None, &path, spec, tx).unwrap();
        feed(&mut sink, 8000, &[700.0], 100);
        drop(sink);
        let end = done(&rx);
        assert_eq!(end.error, None);
        assert_eq!(end.path, dir.join("o.ogg"));
        let bytes = std::fs::read(dir.join("o.ogg")).unwrap();
        assert_eq!(&bytes[..4], b"OggS");
        let pcm = crate::media::decode::to_8k_mono(bytes, 10).unwrap();
        assert!((pcm.len() as i64 - 16000).abs() < 400, "{}", pcm.len());
        assert!(power_db(&pcm[4000..12000], 8000.0, 700.0) > 60.0);
        let (audio, meta) = find(&dir, "o").unwrap();
        assert_eq!(
            (audio, meta.format, meta.sample_rate),
            (dir.join("o.ogg"), RecordFormat::Ogg, 48000)
        );
    }

    #[test]
    fn header_is_current_while_recording() {
        let dir = tmp("live");
        let path = dir.join("b.wav");
        let (tx, _rx) = mpsc::channel();
        let mut sink = start("b".into(), "r", None, &path, RecordSpec::default(), tx).unwrap();
        feed(&mut sink, 8000, &[300.0], (SYNC_EVERY * 2) as usize);
        // a crash now leaves a file whose header already covers the synced part
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let b = std::fs::read(&path).unwrap();
            if let Ok(s) = crate::media::prompt::parse_wav(&b, "b.wav")
                && s.len() >= 160 * SYNC_EVERY as usize
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
        let mut sink = start(
            "c".into(),
            "room1",
            Some(LegId(4)),
            &path,
            RecordSpec::default(),
            tx,
        )
        .unwrap();
        feed(&mut sink, 8000, &[300.0], 10);
        drop(sink);
        done(&rx);
        let all = list(&dir);
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].state, all[0].duration_ms), (State::Completed, 200));
        assert_eq!(all[0].participant, Some(4));
        assert!(
            recover(&dir).is_empty(),
            "a completed recording was recovered"
        );
        // the state a kill -9 leaves: the sidecar still says "recording", the
        // header is a second behind, the last tick is torn
        let mut meta = all[0].clone();
        meta.state = State::Recording;
        meta.id = "d".into();
        let wav = dir.join("d.wav");
        let mut bytes = wav::header(0, 1, 8000).to_vec();
        bytes.extend(std::iter::repeat_n(5u8, 75 * 320 + 17));
        std::fs::write(&wav, &bytes).unwrap();
        write_meta(&wav, &meta).unwrap();
        // and a 16 kHz stereo one, cut the same way
        let mut m2 = meta.clone();
        m2.id = "e".into();
        m2.sample_rate = 16000;
        m2.channels = 2;
        let wav2 = dir.join("e.wav");
        let mut bytes = wav::header(0, 2, 16000).to_vec();
        bytes.extend(std::iter::repeat_n(5u8, 30 * 1280 + 900));
        std::fs::write(&wav2, &bytes).unwrap();
        write_meta(&wav2, &m2).unwrap();
        let mut got = recover(&dir);
        got.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].state, got[0].duration_ms), (State::Recovered, 1500));
        assert_eq!((got[1].state, got[1].duration_ms), (State::Recovered, 600));
        let samples =
            crate::media::prompt::parse_wav(&std::fs::read(&wav).unwrap(), "d.wav").unwrap();
        assert_eq!(samples.len(), 75 * 160);
        assert_eq!(std::fs::metadata(&wav2).unwrap().len(), 44 + 30 * 1280);
        assert!(recover(&dir).is_empty(), "recovered twice");
        let all = list(&dir);
        assert_eq!(all.len(), 3);
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
        // /dev/full cannot be created anew; write to it the way a writer does
        let Ok(file) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
            return;
        };
        let mut w = writer::Writer::new(file, RecordFormat::Wav, 1, 8000, 0).unwrap();
        let silence = [1i16; 160];
        let mut failed = false;
        for _ in 0..1000 {
            if w.tick(8000, &silence).is_err() || w.sync().is_err() {
                failed = true;
                break;
            }
        }
        let (_, _, end) = w.finish();
        assert!(failed || end.is_some());
    }
}
