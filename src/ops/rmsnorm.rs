//! RMSNorm (`attn_norm-{il}`, `ffn_norm-{il}`, `result_norm`): `y = x / sqrt(mean(x²) + eps) · w`.

use rayon::prelude::*;

/// Normalise each row of `x` (`[n_tok][n]`) in place and multiply by `weight` (`[n]`).
///
/// As ggml: f32 squares summed in f64, the mean rounded to f32, then `1 / sqrt(mean + eps)` and the
/// scaling in f32 (which makes the result bit-identical to llama.cpp's).
pub fn rms_norm(x: &mut [f32], weight: &[f32], eps: f32) {
    let n = weight.len();
    // Rows are independent: a prompt's rows go to every thread, a token's stay on this one.
    x.par_chunks_exact_mut(n).with_min_len(PAR_MIN_ELEMS.div_ceil(n.max(1))).for_each(|row| {
        let sum: f64 = row.iter().map(|&v| (v * v) as f64).sum();
        let mean = (sum / n as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for (v, w) in row.iter_mut().zip(weight) {
            *v = (*v * scale) * w;
        }
    });
}

/// Normalise each row of `n` in place without a weight (`ggml_rms_norm` alone: Llama 4's Q/K
/// "L2 norm"); the same rounding as [`rms_norm`] with a weight of ones.
pub fn rms_norm_unweighted(x: &mut [f32], n: usize, eps: f32) {
    x.par_chunks_exact_mut(n).with_min_len(PAR_MIN_ELEMS.div_ceil(n.max(1))).for_each(|row| {
        let sum: f64 = row.iter().map(|&v| (v * v) as f64).sum();
        let mean = (sum / n as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        row.iter_mut().for_each(|v| *v *= scale);
    });
}

/// Below this many elements an elementwise op stays on the calling thread.
pub(crate) const PAR_MIN_ELEMS: usize = 1 << 15;

/// `x += y` elementwise (the residual adds), on every thread when the rows are many.
pub fn add_into(x: &mut [f32], y: &[f32]) {
    const CHUNK: usize = 1 << 14;
    x.par_chunks_mut(CHUNK).zip(y.par_chunks(CHUNK)).for_each(|(x, y)| {
        for (a, b) in x.iter_mut().zip(y) {
            *a += b;
        }
    });
}

/// Add `bias` (`[n]`) to each row of `x` (`[n_tok][n]`): the bias of a norm or a linear layer.
pub fn add_bias(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

/// RMSNorm of each head: `x` is `[n_tok][n_head][head_dim]`, `weight` `[head_dim]` (Qwen3's QK-norm).
pub fn rms_norm_heads(x: &mut [f32], weight: &[f32], eps: f32) {
    // Each head is a row of its own: the row-wise norm with a head-sized weight is exactly that.
    rms_norm(x, weight, eps);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_rng::Rng;

    #[test]
    fn rms_norm_matches_f64() {
        let mut rng = Rng::new(11);
        let (n_tok, n) = (3, 96);
        let x = rng.vec(n_tok * n, 3.0);
        let w = rng.vec(n, 1.5);
        let eps = 1e-5f32;
        let mut y = x.clone();
        rms_norm(&mut y, &w, eps);
        for t in 0..n_tok {
            let row = &x[t * n..(t + 1) * n];
            let ms: f64 = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / n as f64;
            let s = 1.0 / (ms + eps as f64).sqrt();
            for i in 0..n {
                let want = row[i] as f64 * s * w[i] as f64;
                assert!((y[t * n + i] as f64 - want).abs() < 1e-5, "{} vs {want}", y[t * n + i]);
            }
        }
    }

    #[test]
    fn rms_norm_with_bias_matches_f64() {
        let mut rng = Rng::new(12);
        let (n_tok, n) = (4, 40);
        let x = rng.vec(n_tok * n, 2.0);
        let w = rng.vec(n, 1.5);
        let b = rng.vec(n, 0.5);
        let eps = 1e-6f32;
        let mut y = x.clone();
        rms_norm(&mut y, &w, eps);
        add_bias(&mut y, &b);
        for t in 0..n_tok {
            let row = &x[t * n..(t + 1) * n];
            let ms: f64 = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / n as f64;
            let s = 1.0 / (ms + eps as f64).sqrt();
            for i in 0..n {
                let want = row[i] as f64 * s * w[i] as f64 + b[i] as f64;
                assert!((y[t * n + i] as f64 - want).abs() < 1e-5, "{} vs {want}", y[t * n + i]);
            }
        }
    }

    #[test]
    fn qk_norm_normalises_each_head_separately() {
        let mut rng = Rng::new(13);
        let (n_tok, n_head, hd) = (3, 5, 16);
        // Heads of very different scales: a norm over the whole row would not give unit heads.
        let mut x = rng.vec(n_tok * n_head * hd, 1.0);
        for (i, v) in x.iter_mut().enumerate() {
            *v *= 1.0 + (i / hd % n_head) as f32 * 3.0;
        }
        let w = rng.vec(hd, 1.0);
        let eps = 1e-6f32;
        let mut y = x.clone();
        rms_norm_heads(&mut y, &w, eps);
        for (head_in, head_out) in x.chunks_exact(hd).zip(y.chunks_exact(hd)) {
            let ms: f64 = head_in.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / hd as f64;
            let s = 1.0 / (ms + eps as f64).sqrt();
            for i in 0..hd {
                let want = head_in[i] as f64 * s * w[i] as f64;
                assert!((head_out[i] as f64 - want).abs() < 1e-5, "{} vs {want}", head_out[i]);
            }
        }
    }
}
