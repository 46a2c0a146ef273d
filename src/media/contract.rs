//! What signalling and the media engine say to each other: the commands that
//! open, change and close a leg's media and the room's recordings, the events
//! the workers report back, and their periodic tick statistics. The media
//! contract names no socket: a leg's transport is described by a
//! [`TransportSpec`], which only `media::transport` acts on.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::prompt::{Prompt, Sound};
use super::transport::MemPort;
use crate::ids::LegId;
use crate::sdp::{CodecKind, Direction};

/// How a leg's media travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportSpec {
    /// RTP over UDP on the sockets bound for the leg by [`MediaCommand::Bind`]:
    /// sent to `remote` (the SDP's address) until symmetric RTP learns where the
    /// peer really sends from
    Rtp {
        /// the address the SDP gave
        remote: Option<SocketAddr>,
        /// SRTP keys, when SDES secured the stream
        srtp: Option<crate::sdes::Sdes>,
    },
    /// WebRTC: the connection made when the browser's offer was answered, handed
    /// to the engine before this command
    WebRtc,
    /// RTP datagrams exchanged with a gateway task (a WebSocket `connect`):
    /// the pipe staged with the engine before this command
    Pipe,
    /// RTP datagrams through memory (tests and benchmarks: a room ticked with no
    /// socket)
    Mem(MemPort),
}

/// The container and codec of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordFormat {
    /// RIFF WAVE, 16-bit linear PCM
    #[default]
    Wav,
    /// Ogg Opus (RFC 7845), 48 kHz
    Ogg,
}

impl RecordFormat {
    /// The file name extension (and the API's name).
    pub fn ext(self) -> &'static str {
        match self {
            RecordFormat::Wav => "wav",
            RecordFormat::Ogg => "ogg",
        }
    }
}

/// What a recording's channels hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordChannels {
    /// one channel: the room's mix, or one participant's own audio
    #[default]
    Mix,
    /// a room's recording: one channel per participant, in order of arrival,
    /// up to `max`; one participant's: what it says and what it hears
    Split {
        /// channels of a room's recording (1..=32)
        max: u8,
    },
}

/// Most channels a split recording has (Vonage's limit too).
pub const MAX_RECORD_CHANNELS: u8 = 32;

/// How a recording is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSpec {
    /// container and codec
    pub format: RecordFormat,
    /// samples per second in the file: 8000, 16000 or 48000 (Ogg: 48000)
    pub rate: u32,
    /// what the channels hold
    pub channels: RecordChannels,
}

impl Default for RecordSpec {
    fn default() -> Self {
        RecordSpec {
            format: RecordFormat::Wav,
            rate: 8000,
            channels: RecordChannels::Mix,
        }
    }
}

/// Why a recording cannot be laid out as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordSpecError {
    /// not wav or ogg
    #[error("format {0} is not supported (wav or ogg)")]
    Format(String),
    /// not 8000, 16000 or 48000
    #[error("sample_rate {0} is not supported (8000, 16000 or 48000; ogg is 48000)")]
    Rate(u32),
    /// not mix or split
    #[error("channels {0} is not supported (mix or split)")]
    Channels(String),
    /// outside 1..=32
    #[error("max_channels {0} is outside 1..=32")]
    MaxChannels(u64),
}

impl RecordSpec {
    /// The spec the API's (and an NCCO's) names ask for: `format` `wav`
    /// (default) or `ogg`; `rate` 8000 (default for WAV), 16000 or 48000;
    /// `channels` `mix` (default) or `split`, with `max_channels` (default 8)
    /// channels for a room's split recording.
    pub fn parse(
        format: Option<&str>,
        rate: Option<u32>,
        channels: Option<&str>,
        max_channels: Option<u64>,
    ) -> Result<RecordSpec, RecordSpecError> {
        let format = match format {
            None | Some("wav") => RecordFormat::Wav,
            Some("ogg") => RecordFormat::Ogg,
            Some(f) => return Err(RecordSpecError::Format(f.to_string())),
        };
        let rate = match (format, rate) {
            (RecordFormat::Wav, None) => 8000,
            (RecordFormat::Ogg, None | Some(48000)) => 48000,
            (RecordFormat::Wav, Some(r @ (8000 | 16000 | 48000))) => r,
            (_, Some(r)) => return Err(RecordSpecError::Rate(r)),
        };
        let max = match max_channels {
            None => 8,
            Some(m @ 1..=32) => m as u8,
            Some(m) => return Err(RecordSpecError::MaxChannels(m)),
        };
        let channels = match channels {
            None | Some("mix") => RecordChannels::Mix,
            Some("split") => RecordChannels::Split { max },
            Some(c) => return Err(RecordSpecError::Channels(c.to_string())),
        };
        Ok(RecordSpec {
            format,
            rate,
            channels,
        })
    }

    /// Channels in the file of a recording of one participant (`of_leg`) or of
    /// the room.
    pub fn channel_count(&self, of_leg: bool) -> u16 {
        match (self.channels, of_leg) {
            (RecordChannels::Mix, _) => 1,
            (RecordChannels::Split { .. }, true) => 2,
            (RecordChannels::Split { max }, false) => u16::from(max.clamp(1, MAX_RECORD_CHANNELS)),
        }
    }
}

/// Negotiated media of a leg, as signalling tells the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaParams {
    /// codec
    pub codec: CodecKind,
    /// its payload type
    pub pt: u8,
    /// telephone-event payload type
    pub dtmf_pt: Option<u8>,
    /// the peer's direction attribute
    pub peer_direction: Direction,
    /// our SSRC towards the peer
    pub ssrc: u32,
    /// packet time the peer sends (10..=60 ms)
    pub ptime_ms: u32,
}

/// What the room does to a leg's voice before mixing it: noise suppression
/// and loudness levelling (the room's `denoise` and `level`; both on unless
/// the room turns them off). A leg carrying another room's mix (a link) gets
/// neither: that room has treated its talkers already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Treatment {
    /// RNNoise on what it says, while it is among the mixed talkers
    pub denoise: bool,
    /// its gain steered toward the room's loudness target
    pub level: bool,
}

impl Treatment {
    /// Nothing done: the voice as it came.
    pub const NONE: Treatment = Treatment {
        denoise: false,
        level: false,
    };
    /// Both.
    pub const FULL: Treatment = Treatment {
        denoise: true,
        level: true,
    };
}

impl Default for Treatment {
    fn default() -> Self {
        Treatment::FULL
    }
}

/// What signalling asks of the media side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaCommand {
    /// bind the leg's RTP socket at `addr` and RTCP at the port above, before
    /// any SDP announces them; the driver answers with `Core::media_bound` (an
    /// RTP transport's sockets; see [`TransportSpec::Rtp`])
    Bind {
        /// leg
        leg: LegId,
        /// RTP address (RTCP on port + 1)
        addr: SocketAddr,
    },
    /// put the leg in the room, its media travelling as `transport` says
    Open {
        /// leg
        leg: LegId,
        /// room name
        room: String,
        /// negotiated parameters
        params: MediaParams,
        /// how its media travels
        transport: TransportSpec,
        /// kept out of the mix (hears only its prompts) until [`MediaCommand::Join`]
        isolated: bool,
        /// what the room does to its voice
        treatment: Treatment,
    },
    /// put an isolated leg into the mix (stops its music on hold and prompts)
    Join {
        /// leg
        leg: LegId,
    },
    /// loop music on hold to an isolated leg (waiting for the moderator)
    Hold {
        /// leg
        leg: LegId,
        /// what to loop
        music: Prompt,
    },
    /// loop a sound (an NCCO's musicOnHoldUrl) to an isolated leg
    HoldSound {
        /// leg
        leg: LegId,
        /// what to loop
        sound: Sound,
    },
    /// stop (or resume) mixing what this leg says; it still hears the room
    Mute {
        /// leg
        leg: LegId,
        /// muted or not
        muted: bool,
    },
    /// stop (or resume) sending the room to this leg; it is still heard
    Deaf {
        /// leg
        leg: LegId,
        /// deaf or not
        deaf: bool,
    },
    /// the leg's volumes: what it says, to the others, and what it hears of the
    /// room, in dB (−12..12; 0 as is)
    Volume {
        /// leg
        leg: LegId,
        /// volume_in
        speak_db: i8,
        /// volume_out
        hear_db: i8,
    },
    /// the pipes of two legs that are each other's peer (a link between
    /// rooms): what one sends, the other receives; their Opens take them
    CrossPipes {
        /// one end
        a: LegId,
        /// the other
        b: LegId,
    },
    /// play a sound to a whole room, mixed once for all (an announcement)
    Announce {
        /// room
        room: String,
        /// playback id
        id: u64,
        /// what
        sound: Sound,
        /// how many times
        plays: u32,
    },
    /// stop a room's announcement
    StopAnnounce {
        /// room
        room: String,
        /// playback id
        id: u64,
    },
    /// stop the leg's current prompt and drop its queue (barge-in); music on hold
    /// carries on
    Interrupt {
        /// leg
        leg: LegId,
    },
    /// the leg goes to another room with its transport and codec state (a
    /// move or an NCCO transfer): out of the old room's mix, into the new one
    /// (or `isolated` from it), its prompts, music and mute state dropped
    Move {
        /// leg
        leg: LegId,
        /// the room it goes to
        room: String,
        /// hears and is heard by nobody in it yet (PIN, waiting, intro)
        isolated: bool,
        /// what that room does to its voice
        treatment: Treatment,
    },
    /// who this leg hears and who hears it, when not everyone (Vonage's
    /// canHear / canSpeak lists, whisper and coach); `Relation::default()`
    /// gives it back to the whole room
    Relate {
        /// leg
        leg: LegId,
        /// its relations
        relation: Relation,
    },
    /// keep the next `ms` of what this leg says, in memory at 8 kHz, and hand
    /// it back ([`MediaEvent::Captured`]): a participant's name, said on entry
    Capture {
        /// leg
        leg: LegId,
        /// how long
        ms: u32,
    },
    /// send key presses to this leg's peer as RFC 4733 events (it negotiated
    /// telephone-event), in place of its audio while they last
    SendDtmf {
        /// leg
        leg: LegId,
        /// event codes (0-9, 10 = *, 11 = #, 12-15 = A-D)
        events: Vec<u8>,
    },
    /// play prompts to this leg only, in order, after any already queued
    Play {
        /// leg
        leg: LegId,
        /// what to say
        prompts: Vec<Prompt>,
    },
    /// play a sound (a WAV file loaded by the control plane) to this leg only
    PlaySound {
        /// leg
        leg: LegId,
        /// samples
        sound: Sound,
    },
    /// start recording the room's mix (`leg` None) or one leg's own audio
    Record {
        /// recording id
        id: String,
        /// room
        room: String,
        /// whose audio
        leg: Option<LegId>,
        /// file to create (must not exist)
        path: PathBuf,
        /// format, rate and channels
        spec: RecordSpec,
    },
    /// stop a recording (the writer finishes the file and reports it)
    StopRecording {
        /// recording id
        id: String,
        /// room
        room: String,
    },
    /// renegotiated (re-INVITE/UPDATE: hold, codec or address change)
    Update {
        /// leg
        leg: LegId,
        /// new parameters
        params: MediaParams,
        /// where its media goes now
        transport: TransportSpec,
    },
    /// take the leg out and close its sockets
    Close {
        /// leg
        leg: LegId,
    },
}

/// What the media side reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// talker detection changed state for a leg
    Talking {
        /// leg
        leg: LegId,
        /// true when it started talking
        talking: bool,
    },
    /// a worker's tick timing over the last reporting interval
    TickStats(TickStats),
    /// the leg's prompt queue has played out
    PromptDone {
        /// leg
        leg: LegId,
    },
    /// a recording's file is complete (stopped, or ended by an error)
    RecordingDone(Box<RecordingEnd>),
    /// a room's announcement has played its last time
    PlaybackDone {
        /// its playback id
        id: u64,
    },
    /// no RTP from the leg's peer for the RTP timeout (or the hold timeout)
    RtpTimeout {
        /// leg
        leg: LegId,
    },
    /// what a [`MediaCommand::Capture`] kept: 8 kHz mono
    Captured {
        /// leg
        leg: LegId,
        /// the samples
        samples: Vec<i16>,
    },
    /// a DTMF digit (RFC 4733 event, or detected in-band), reported once per key
    Dtmf {
        /// leg
        leg: LegId,
        /// '0'-'9', '*', '#', 'A'-'D'
        digit: char,
    },
}

/// Tick timing of one worker over one reporting interval (5 s).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TickStats {
    /// worker index
    pub worker: usize,
    /// ticks run
    pub ticks: u32,
    /// legs held at the end of the interval
    pub legs: usize,
    /// lateness of the tick start against its schedule, µs: median
    pub late_p50_us: u32,
    /// 99th percentile
    pub late_p99_us: u32,
    /// maximum
    pub late_max_us: u32,
    /// lateness of every tick start added up, µs (the histogram's exact sum)
    pub late_sum_us: u64,
    /// time spent working in ticks, µs in total
    pub busy_us: u64,
    /// the longest tick's work, µs
    pub busy_max_us: u32,
    /// of the ticks' wall time, what the worker did not run (wall time minus the
    /// thread's CPU time), µs in total: on a virtual machine mostly the host's
    /// steal, which no scheduling inside the guest can prevent
    pub offcpu_us: u64,
    /// the largest such gap in one tick, µs
    pub offcpu_max_us: u32,
    /// the lateness histogram: (start of a 100 µs bucket in µs, ticks in
    /// it) for each bucket that holds any, so that a reader can pool intervals and
    /// workers into one distribution (a percentile of percentiles is not one)
    pub late_hist: Vec<(u32, u32)>,
    /// RTP packets received by the worker's legs since it started (closed legs
    /// included: it only grows)
    pub rtp_received: u64,
    /// RTP packets lost by them (RFC 3550 cumulative lost, summed; only grows)
    pub rtp_lost: i64,
    /// RTP packets dropped because their source was not the learned one
    pub rtp_strays: u64,
    /// interarrival jitter over the worker's legs, µs: mean and largest
    pub jitter_mean_us: u32,
    /// largest
    pub jitter_max_us: u32,
}

impl TickStats {
    /// Ticks by lateness: ≤ 0.5, 1, 2, 5, 10, 20, 50 ms ([`LATE_BOUNDS_US`],
    /// each bucket on its own; the rest were later), from `late_hist`.
    pub fn late_buckets(&self) -> [u32; 7] {
        let mut out = [0u32; 7];
        for &(start, n) in &self.late_hist {
            // a 100 µs bucket holds lateness in [start, start + 100) µs
            if let Some(b) = LATE_BOUNDS_US
                .iter()
                .position(|&bound| start + 100 <= bound)
            {
                out[b] += n;
            }
        }
        out
    }
}

/// How long a leg may send no RTP before it is reported dead (zero: never).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpTimeouts {
    /// while the call is sendrecv
    pub active: Duration,
    /// while it is on hold (sendonly, recvonly, inactive)
    pub hold: Duration,
}

impl Default for RtpTimeouts {
    fn default() -> Self {
        RtpTimeouts {
            active: Duration::from_secs(60),
            hold: Duration::from_secs(3600),
        }
    }
}

/// Upper bounds of [`TickStats::late_buckets`], in µs.
pub const LATE_BOUNDS_US: [u32; 7] = [500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000];

/// How a recording ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingEnd {
    /// recording id
    pub id: String,
    /// the file
    pub path: PathBuf,
    /// audio written
    pub duration_ms: u64,
    /// file size
    pub bytes: u64,
    /// frames the disk could not keep up with
    pub dropped_frames: u64,
    /// why it stopped early (disk full, …); None when stopped as asked
    pub error: Option<String>,
}

/// Who a leg hears and who hears it, by leg id, where not the whole room
/// (`None`: everyone). A leg with a relation, and a leg a restricted talker
/// is heard by, get a mix of their own; every other leg keeps sharing one
/// encode per codec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Relation {
    /// the legs it hears
    pub hears: Option<Vec<LegId>>,
    /// the legs that hear it
    pub heard_by: Option<Vec<LegId>>,
}

impl Relation {
    /// Everyone both ways: no relation at all.
    pub fn is_default(&self) -> bool {
        self.hears.is_none() && self.heard_by.is_none()
    }
}
