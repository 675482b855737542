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

    /// A copy of positions `0..n` (the server's host-memory prompt cache keeps these).
    pub fn snapshot(&self, n: usize) -> Result<KvSnapshot, String> {
        let n = n.min(self.capacity);
        let copy = |bufs: &[Vec<f16>], row: usize| -> Result<Vec<Vec<f16>>, String> {
            bufs.iter()
                .map(|b| {
                    let mut out = Vec::new();
                    out.try_reserve_exact(n * row)
                        .map_err(|_| "cannot allocate a KV snapshot".to_string())?;
                    out.extend_from_slice(&b[..n * row]);
                    Ok(out)
                })
                .collect()
        };
        Ok(KvSnapshot {
            n,
            k_row: self.k_row,
            v_row: self.v_row,
            k: copy(&self.k, self.k_row)?,
            v: copy(&self.v, self.v_row)?,
        })
    }

    /// Put a snapshot's positions back at `0..n`; refused (nothing changed) when it was taken
    /// from a cache of other rows or layers, or does not fit.
    pub fn restore(&mut self, s: &KvSnapshot) -> Result<(), String> {
        if (s.k_row, s.v_row, s.k.len()) != (self.k_row, self.v_row, self.k.len()) {
            return Err("KV snapshot from a cache of another shape".into());
        }
        self.reserve(s.n)?;
        for (dst, src) in self.k.iter_mut().zip(&s.k).chain(self.v.iter_mut().zip(&s.v)) {
            dst[..src.len()].copy_from_slice(src);
        }
        Ok(())
    }
}

/// Positions `0..n` of a [`KvCache`], every layer's K and V rows.
#[derive(Clone)]
pub struct KvSnapshot {
    n: usize,
    k_row: usize,
    v_row: usize,
    k: Vec<Vec<f16>>,
    v: Vec<Vec<f16>>,
}

impl KvSnapshot {
    /// The K and V row widths and layer count it was taken with.
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.k.len(), self.k_row, self.v_row)
    }

    /// Every layer's K values, then every layer's V values (positions `0..n` each).
    pub fn values(&self) -> impl Iterator<Item = &[f16]> {
        self.k.iter().chain(&self.v).map(Vec::as_slice)
    }

    /// A snapshot of `n` positions from `read`, which fills each layer's K, then each layer's V
    /// (as [`KvSnapshot::values`] gives them).
    pub fn read(
        (n_layer, k_row, v_row): (usize, usize, usize),
        n: usize,
        mut read: impl FnMut(&mut [f16]) -> Result<(), String>,
    ) -> Result<KvSnapshot, String> {
        let mut part = |row: usize| -> Result<Vec<Vec<f16>>, String> {
            (0..n_layer)
                .map(|_| {
                    let len = n.checked_mul(row).ok_or("KV snapshot size overflows")?;
                    let mut b = Vec::new();
                    b.try_reserve_exact(len).map_err(|_| "cannot allocate a KV snapshot".to_string())?;
                    b.resize(len, f16::ZERO);
                    read(&mut b)?;
                    Ok(b)
                })
                .collect()
        };
        let k = part(k_row)?;
        let v = part(v_row)?;
        Ok(KvSnapshot { n, k_row, v_row, k, v })
    }

    /// Positions held.
    pub fn n_positions(&self) -> usize {
        self.n
    }

    /// Bytes held (what `--cache-ram` counts).
    pub fn n_bytes(&self) -> usize {
        let values: usize = self.k.iter().chain(&self.v).map(Vec::len).sum();
        values * std::mem::size_of::<f16>()
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

    #[test]
    fn a_snapshot_restores_the_positions_it_took_into_an_empty_cache() {
        let mut kv = KvCache::growable(2, 8, 2, 1).unwrap();
        kv.reserve(3).unwrap();
        for il in 0..2 {
            let base = il as f32 * 10.0;
            kv.store(
                il,
                0,
                &[base, base + 1.0, base + 2.0, base + 3.0, base + 4.0, base + 5.0],
                &[base + 6.0, base + 7.0, base + 8.0],
            );
        }
        let snap = kv.snapshot(2).unwrap();
        assert_eq!(snap.n_positions(), 2);
        assert_eq!(snap.n_bytes(), 2 * (2 * 2 + 2) * 2, "2 layers × 2 positions × (2 + 1) values × 2 bytes");
        let mut other = KvCache::growable(2, 8, 2, 1).unwrap();
        other.restore(&snap).unwrap();
        for il in 0..2 {
            let base = il as f32 * 10.0;
            let (k, v) = other.layer(il);
            assert_eq!(&k[..4], &[base, base + 1.0, base + 2.0, base + 3.0].map(f16::from_f32));
            assert_eq!(&v[..2], &[base + 6.0, base + 7.0].map(f16::from_f32));
        }
        let mut wrong = KvCache::growable(2, 8, 3, 1).unwrap();
        assert!(wrong.restore(&snap).is_err());
        let mut short = KvCache::growable(2, 1, 2, 1).unwrap();
        assert!(short.restore(&snap).is_err(), "2 positions do not fit a cache of 1");
    }
}
