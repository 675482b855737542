//! Reused f32 buffers for a call's temporaries (rounded activations, the gate and up outputs of a
//! batch). A prompt of 512 tokens through SmolLM2 allocated, zeroed and freed megabytes per
//! matmul: `memset`, `memmove` and page faults took ~4% of pp512 on Zen 3. A buffer from here
//! holds stale values of an earlier use, never uninitialised memory, so callers that write every
//! element before reading it need no zeroing.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

use rayon::prelude::*;

/// Buffers kept per thread; more are freed.
const KEPT: usize = 6;

thread_local! {
    static FREE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// A `[f32]` of a given length whose contents are unspecified (finite or not); it goes back to
/// its thread's free list when dropped. The vector keeps its whole length (a shorter view is
/// `len`), since shrinking a `Vec` would make it zero-fill the same memory again when it grows.
pub struct Scratch {
    buf: Vec<f32>,
    len: usize,
}

/// A buffer of `len` values from this thread's free list (the smallest that holds `len`, else
/// the largest, grown), or a new one.
pub fn scratch(len: usize) -> Scratch {
    let mut buf = FREE.with(|free| {
        let mut free = free.borrow_mut();
        let fits = (0..free.len()).filter(|&i| free[i].len() >= len).min_by_key(|&i| free[i].len());
        let pick = fits.or_else(|| (0..free.len()).max_by_key(|&i| free[i].len()));
        pick.map(|i| free.swap_remove(i)).unwrap_or_default()
    });
    // Growth is zero-filled once; what was there keeps its stale values.
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    Scratch { buf, len }
}

/// `x` rounded by `round` (an elementwise rounding, in place on a copy), in a scratch buffer.
/// Chunk by chunk across threads, each chunk copied and rounded while in L1: done serially,
/// the copy and the rounding of a batch's activations left the other threads idle for ~2% of
/// SmolLM2's pp512.
pub fn rounded_copy(x: &[f32], round: fn(&mut [f32])) -> Scratch {
    const CHUNK: usize = 4096;
    let mut r = scratch(x.len());
    r.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(dst, src)| {
        dst.copy_from_slice(src);
        round(dst);
    });
    r
}

impl Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[..self.len]
    }
}

impl DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[..self.len]
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        // `try_with`: a buffer dropped while its thread exits is simply freed.
        let _ = FREE.try_with(|free| {
            let mut free = free.borrow_mut();
            if free.len() < KEPT {
                free.push(buf);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_with_the_asked_length_and_are_reused() {
        let mut a = scratch(1000);
        a.fill(7.0);
        let ptr = a.as_ptr();
        drop(a);
        let b = scratch(600);
        assert_eq!(b.len(), 600);
        assert_eq!(b.as_ptr(), ptr, "the freed buffer is reused");
        assert!(b.iter().all(|&v| v == 7.0), "its values are left as they were");
        drop(b);
        let c = scratch(2000);
        assert_eq!(c.len(), 2000);
        assert!(c[..1000].iter().all(|&v| v == 7.0), "all of the old buffer is kept");
        assert!(c[1000..].iter().all(|&v| v == 0.0), "growth is zeroed");
    }
}
