//! The KV cache: per layer, K `[n_ctx][n_head_kv·head_dim_k]` and V `[n_ctx][n_head_kv·head_dim_v]`,
//! stored as f16 like llama.cpp's default `-ctk f16 -ctv f16`.
//!
//! A cache may start small and grow (doubling, up to `n_ctx`) as its sequence gets longer: the
//! server's slots each may hold a whole context, but together they share one budget, so none
//! allocates more than it uses.

use half::f16;
use rayon::prelude::*;

pub struct KvCache {
    n_ctx: usize,
    /// Positions allocated (≤ `n_ctx`).
    capacity: usize,
    k_row: usize,
    v_row: usize,
    k: Vec<Vec<f16>>,
    v: Vec<Vec<f16>>,
}

/// `n` more f16 values of zero, or an error instead of an abort.
fn grow(buf: &mut Vec<f16>, len: usize) -> Result<(), String> {
    let more = len.saturating_sub(buf.len());
    buf.try_reserve_exact(more).map_err(|_| format!("cannot allocate a KV cache of {len} values"))?;
    buf.resize(len, f16::ZERO);
    Ok(())
}

impl KvCache {
    /// All `n_ctx` positions allocated now. Fails (instead of aborting) when they cannot be.
    pub fn new(n_layer: usize, n_ctx: usize, k_row: usize, v_row: usize) -> Result<KvCache, String> {
        let mut kv = KvCache::growable(n_layer, n_ctx, k_row, v_row)?;
        kv.reserve(n_ctx)?;
        Ok(kv)
    }

    /// Nothing allocated yet: [`KvCache::reserve`] grows it.
    pub fn growable(n_layer: usize, n_ctx: usize, k_row: usize, v_row: usize) -> Result<KvCache, String> {
        n_ctx.checked_mul(k_row.max(v_row)).ok_or("KV cache size overflows")?;
        let empty = || (0..n_layer).map(|_| Vec::new()).collect();
        Ok(KvCache { n_ctx, capacity: 0, k_row, v_row, k: empty(), v: empty() })
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Positions allocated now.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Make room for positions `0..n` (at least; growth doubles, up to `n_ctx`).
    pub fn reserve(&mut self, n: usize) -> Result<(), String> {
        if n <= self.capacity {
            return Ok(());
        }
        if n > self.n_ctx {
            return Err(format!("KV cache: {n} positions asked of a cache of {}", self.n_ctx));
        }
        let cap = n.max(self.capacity * 2).min(self.n_ctx);
        for (k, v) in self.k.iter_mut().zip(&mut self.v) {
            grow(k, cap * self.k_row)?;
            grow(v, cap * self.v_row)?;
        }
        self.capacity = cap;
        Ok(())
    }

    /// Give the memory back (a growable cache starts again from nothing).
    pub fn release(&mut self) {
        for b in self.k.iter_mut().chain(&mut self.v) {
            *b = Vec::new();
        }
        self.capacity = 0;
    }

    /// Write `k` (`[n_tok][k_row]`) and `v` (`[n_tok][v_row]`) at positions `pos0..`, rounding to f16.
    /// The positions must be reserved.
    pub fn store(&mut self, il: usize, pos0: usize, k: &[f32], v: &[f32]) {
        let kd = &mut self.k[il][pos0 * self.k_row..][..k.len()];
        let vd = &mut self.v[il][pos0 * self.v_row..][..v.len()];
        // A prompt's rows are converted on every thread; one token's stay on this one.
        const CHUNK: usize = 1 << 14;
        let pairs = kd.par_chunks_mut(CHUNK).zip(k.par_chunks(CHUNK));
        let all = pairs.chain(vd.par_chunks_mut(CHUNK).zip(v.par_chunks(CHUNK)));
        // One token's K and V are a chunk each: keep the two together.
        all.with_min_len(2).for_each(|(d, s)| {
            for (d, s) in d.iter_mut().zip(s) {
                *d = f16::from_f32(*s);
            }
        });
    }

    /// Layer `il`'s K and V, the positions allocated.
    pub fn layer(&self, il: usize) -> (&[f16], &[f16]) {
        (&self.k[il], &self.v[il])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_growable_cache_keeps_what_it_stored_as_it_grows() {
        let mut kv = KvCache::growable(2, 10, 3, 2).unwrap();
        assert_eq!(kv.capacity(), 0);
        kv.reserve(1).unwrap();
        kv.store(1, 0, &[1.0, 2.0, 3.0], &[4.0, 5.0]);
        kv.reserve(3).unwrap();
        assert_eq!(kv.capacity(), 3);
        kv.reserve(4).unwrap();
        assert_eq!(kv.capacity(), 6, "doubles");
        kv.reserve(10).unwrap();
        assert_eq!(kv.capacity(), 10, "capped at n_ctx");
        let (k, v) = kv.layer(1);
        assert_eq!(k.len(), 30);
        assert_eq!(&k[..3], &[1.0, 2.0, 3.0].map(f16::from_f32));
        assert_eq!(&v[..2], &[4.0, 5.0].map(f16::from_f32));
        assert!(kv.reserve(11).is_err());
    }
}
