//! One room mixed across media workers: the bus its shards meet on.
//!
//! A room holds its legs on one worker until it grows past
//! [`super::engine::SHARD_AT`]; further legs go to the least loaded worker, so
//! that a room of thousands uses every core rather than overrunning its 20 ms
//! tick on one. Each worker then holds a shard of the room and, once per tick,
//! publishes its loudest talkers' frames here and takes the other shards'. Every
//! shard mixes the room's loudest talkers from its own and the published ones,
//! so everyone hears everyone; a talker is never published back to its own shard,
//! so no one hears themselves. Audio crossing shards is one tick (20 ms) late at
//! most: the workers tick half a period apart, so a shard always reads frames the
//! others published in their last tick.
//!
//! Per tick and shard: one uncontended lock to publish (a copy of at most
//! `max_talkers` frames) and one per other shard to read. Nothing per packet.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::frame::{MAX_FRAME, MAX_TALKERS};

/// Frames older than this are from a shard that stopped ticking (its last leg
/// left): not mixed.
const STALE: Duration = Duration::from_millis(45);

/// One shard's talkers of its last tick.
struct Published {
    at: Option<Instant>,
    rate: u32,
    count: usize,
    levels: [u64; MAX_TALKERS],
    frames: Box<[[i16; MAX_FRAME]; MAX_TALKERS]>,
}

/// The shards' published talkers, one slot per worker.
pub struct RoomBus {
    slots: Vec<Mutex<Published>>,
}

/// Talkers taken from the other shards, at the reader's rate.
pub struct Remote {
    /// how many of `levels`/`frames` hold a talker
    pub count: usize,
    /// their smoothed levels (for ranking with the local talkers)
    pub levels: [u64; MAX_TALKERS],
    /// their frames
    pub frames: Box<[[i16; MAX_FRAME]; MAX_TALKERS]>,
}

impl Default for Remote {
    fn default() -> Self {
        Remote {
            count: 0,
            levels: [0; MAX_TALKERS],
            frames: Box::new([[0; MAX_FRAME]; MAX_TALKERS]),
        }
    }
}

impl RoomBus {
    /// A bus for a room spread over at most `shards` workers.
    pub fn new(shards: usize) -> Arc<RoomBus> {
        Arc::new(RoomBus {
            slots: (0..shards)
                .map(|_| {
                    Mutex::new(Published {
                        at: None,
                        rate: 8000,
                        count: 0,
                        levels: [0; MAX_TALKERS],
                        frames: Box::new([[0; MAX_FRAME]; MAX_TALKERS]),
                    })
                })
                .collect(),
        })
    }

    /// Publish shard `shard`'s talkers of this tick: (level, frame at `rate`).
    pub fn publish<'a>(
        &self,
        shard: usize,
        now: Instant,
        rate: u32,
        talkers: impl Iterator<Item = (u64, &'a [i16])>,
    ) {
        let Some(slot) = self.slots.get(shard) else {
            return;
        };
        // a poisoned lock only means a worker panicked mid-copy: the data is
        // plain samples, still fit to use
        let mut p = slot.lock().unwrap_or_else(PoisonError::into_inner);
        p.at = Some(now);
        p.rate = rate;
        p.count = 0;
        for (level, frame) in talkers.take(MAX_TALKERS) {
            let k = p.count;
            p.levels[k] = level;
            let n = frame.len().min(MAX_FRAME);
            p.frames[k][..n].copy_from_slice(&frame[..n]);
            p.count += 1;
        }
    }

    /// Take the other shards' fresh talkers into `out`, the loudest
    /// `MAX_TALKERS` of them, converted to `rate`.
    pub fn collect(&self, shard: usize, now: Instant, rate: u32, out: &mut Remote) {
        out.count = 0;
        let n = (rate / 50) as usize;
        for (i, slot) in self.slots.iter().enumerate() {
            if i == shard {
                continue;
            }
            let p = slot.lock().unwrap_or_else(PoisonError::into_inner);
            let fresh =
                p.at.is_some_and(|at| now.saturating_duration_since(at) < STALE);
            if !fresh {
                continue;
            }
            for k in 0..p.count {
                // keep the loudest: fill, then replace the quietest kept
                let at = if out.count < MAX_TALKERS {
                    out.count += 1;
                    out.count - 1
                } else {
                    let (q, &quietest) = out
                        .levels
                        .iter()
                        .enumerate()
                        .min_by_key(|&(_, l)| *l)
                        .unwrap_or((0, &0));
                    if quietest >= p.levels[k] {
                        continue;
                    }
                    q
                };
                out.levels[at] = p.levels[k];
                convert(&p.frames[k], p.rate, &mut out.frames[at][..n], rate);
            }
        }
    }
}

/// A frame from `from_rate` to the `to.len()` samples of `to_rate`. The room
/// rates are 8, 16 and 48 kHz, whole factors of each other; shards differ only
/// while one holds a wider-band leg than another, so a plain hold (up) or
/// average (down) does.
fn convert(from: &[i16; MAX_FRAME], from_rate: u32, to: &mut [i16], to_rate: u32) {
    if from_rate == to_rate {
        to.copy_from_slice(&from[..to.len()]);
    } else if to_rate > from_rate {
        let k = (to_rate / from_rate).max(1) as usize;
        for (i, o) in to.iter_mut().enumerate() {
            *o = from[(i / k).min(MAX_FRAME - 1)];
        }
    } else {
        let k = (from_rate / to_rate).max(1) as usize;
        for (i, o) in to.iter_mut().enumerate() {
            let src = &from[(i * k).min(MAX_FRAME)..((i + 1) * k).min(MAX_FRAME)];
            let sum: i32 = src.iter().map(|&s| i32::from(s)).sum();
            *o = (sum / src.len().max(1) as i32) as i16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_reads_the_others_loudest_fresh_talkers_never_its_own() {
        let bus = RoomBus::new(3);
        let now = Instant::now();
        let a = [100i16; 160];
        let b = [200i16; 160];
        bus.publish(0, now, 8000, [(5u64, &a[..])].into_iter());
        bus.publish(1, now, 8000, [(9u64, &b[..])].into_iter());
        let mut out = Remote::default();
        bus.collect(0, now, 8000, &mut out);
        assert_eq!(out.count, 1, "shard 0 must not read itself");
        assert_eq!((out.levels[0], out.frames[0][0]), (9, 200));
        bus.collect(2, now, 8000, &mut out);
        assert_eq!(out.count, 2);
        // a shard that stopped publishing is dropped once stale
        bus.collect(2, now + Duration::from_millis(60), 8000, &mut out);
        assert_eq!(out.count, 0);
    }

    #[test]
    fn frames_cross_rates() {
        let bus = RoomBus::new(2);
        let now = Instant::now();
        let narrow: Vec<i16> = (0..160).collect();
        bus.publish(0, now, 8000, [(1u64, &narrow[..])].into_iter());
        let mut out = Remote::default();
        bus.collect(1, now, 48000, &mut out);
        assert_eq!(&out.frames[0][..12], &[0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]);
        let wide: Vec<i16> = (0..960).map(|i| (i / 6) as i16 * 2).collect();
        bus.publish(1, now, 48000, [(1u64, &wide[..])].into_iter());
        bus.collect(0, now, 8000, &mut out);
        assert_eq!(&out.frames[0][..3], &[0, 2, 4]);
    }
}
