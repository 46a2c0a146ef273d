//! The mixing arithmetic of one room tick, kept pure so it can be tested and
//! benchmarked alone: accumulate contributors in i32 (no clipping until the end),
//! give each contributor `sat(sum - own)` and everyone else `sat(sum)`. Written as
//! straight loops over slices so the compiler vectorises them.

/// Add `frame` into `acc`.
#[inline]
pub fn accumulate(acc: &mut [i32], frame: &[i16]) {
    for (a, &s) in acc.iter_mut().zip(frame) {
        *a += i32::from(s);
    }
}

/// `out = saturate(acc - own)`; `own = None` gives the full mix.
#[inline]
pub fn mix_minus(acc: &[i32], own: Option<&[i16]>, out: &mut [i16]) {
    match own {
        Some(own) => {
            for ((o, &a), &s) in out.iter_mut().zip(acc).zip(own) {
                *o = (a - i32::from(s)).clamp(-32768, 32767) as i16;
            }
        }
        None => {
            for (o, &a) in out.iter_mut().zip(acc) {
                *o = a.clamp(-32768, 32767) as i16;
            }
        }
    }
}

/// Unity gain in [`gain`]'s Q12 fixed point.
pub const UNITY: u16 = 4096;

/// A gain of `db` decibels (−12..12) in Q12.
pub fn gain(db: i8) -> u16 {
    let g = 10f64.powf(f64::from(db.clamp(-12, 12)) / 20.0);
    (g * f64::from(UNITY)).round() as u16
}

/// Scale `frame` by a Q12 `gain`, saturating.
#[inline]
pub fn scale(frame: &mut [i16], gain: u16) {
    let g = i32::from(gain);
    for s in frame {
        *s = ((i32::from(*s) * g) >> 12).clamp(-32768, 32767) as i16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn gains_in_decibels() {
        assert_eq!(gain(0), UNITY);
        let mut f = [1000i16, -1000, 30000];
        scale(&mut f, gain(6));
        assert!((1990..=2000).contains(&f[0]), "{f:?}");
        assert!((-2000..=-1990).contains(&f[1]), "{f:?}");
        assert_eq!(f[2], 32767, "saturates");
        scale(&mut f[..1], gain(-6));
        assert!((990..=1000).contains(&f[0]), "{f:?}");
    }

    proptest! {
        #[test]
        fn out_is_saturated_sum_minus_own(frames in proptest::collection::vec(proptest::collection::vec(any::<i16>(), 8), 1..12)) {
            let mut acc = vec![0i32; 8];
            for f in &frames { accumulate(&mut acc, f); }
            for (i, own) in frames.iter().enumerate() {
                let mut out = [0i16; 8];
                mix_minus(&acc, Some(own), &mut out);
                for k in 0..8 {
                    let others: i32 = frames.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, f)| i32::from(f[k])).sum();
                    prop_assert_eq!(i32::from(out[k]), others.clamp(-32768, 32767));
                }
            }
        }
    }
}
