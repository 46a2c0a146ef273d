//! Software prefetch: start loading cache lines the media loop will touch a little
//! later. At thousands of legs nothing of a leg is still in cache from its last tick
//! (the kernel's socket buffers pass through the same caches in between), and each
//! first touch of a line stalled the loop; issued a leg ahead, the loads overlap the
//! current leg's system calls instead.
//!
//! The one `unsafe` here: the prefetch instruction is a hint that never faults and
//! never changes what the program reads, whatever the address (it may even be
//! dangling or out of bounds), so no invariant rests on its argument.

#![allow(unsafe_code)]

/// Ask for the `bytes` bytes from `p` (at least its first line) to be brought
/// into the cache.
#[inline(always)]
pub fn lines<T>(p: *const T, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let p = p.cast::<i8>();
        let mut off = 0;
        loop {
            // SAFETY: see the module header; prefetch cannot fault
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off)) };
            off += 64;
            if off >= bytes {
                break;
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, bytes);
}
