//! The KV cache: per layer, K `[n_ctx][n_head_kv·head_dim_k]` and V `[n_ctx][n_head_kv·head_dim_v]`,
//! stored as f16 like llama.cpp's default `-ctk f16 -ctv f16`.

use half::f16;
use rayon::prelude::*;

pub struct KvCache {
    n_ctx: usize,
    k_row: usize,
    v_row: usize,
    k: Vec<Vec<f16>>,
    v: Vec<Vec<f16>>,
}

impl KvCache {
    /// Fails (instead of aborting) when the cache cannot be allocated.
    pub fn new(n_layer: usize, n_ctx: usize, k_row: usize, v_row: usize) -> Result<KvCache, String> {
        let alloc = |row: usize| -> Result<Vec<f16>, String> {
            let n = n_ctx.checked_mul(row).ok_or("KV cache size overflows")?;
            let mut v = Vec::new();
            v.try_reserve_exact(n).map_err(|_| format!("cannot allocate a KV cache of {n_ctx} positions"))?;
            v.resize(n, f16::ZERO);
            Ok(v)
        };
        let mut k = Vec::with_capacity(n_layer);
        let mut v = Vec::with_capacity(n_layer);
        for _ in 0..n_layer {
            k.push(alloc(k_row)?);
            v.push(alloc(v_row)?);
        }
        Ok(KvCache { n_ctx, k_row, v_row, k, v })
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Write `k` (`[n_tok][k_row]`) and `v` (`[n_tok][v_row]`) at positions `pos0..`, rounding to f16.
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

    /// Layer `il`'s K and V, all `n_ctx` positions.
    pub fn layer(&self, il: usize) -> (&[f16], &[f16]) {
        (&self.k[il], &self.v[il])
    }
}
