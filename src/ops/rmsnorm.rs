//! RMSNorm (`attn_norm-{il}`, `ffn_norm-{il}`, `result_norm`): `y = x / sqrt(mean(x²) + eps) · w`.

/// Normalise each row of `x` (`[n_tok][n]`) in place and multiply by `weight` (`[n]`).
///
/// As ggml, the squares are accumulated in f64, `mean + eps` is rounded to f32 before the square root,
/// and the scale is applied in f32.
pub fn rms_norm(x: &mut [f32], weight: &[f32], eps: f32) {
    let n = weight.len();
    for row in x.chunks_exact_mut(n) {
        let sum: f64 = row.iter().map(|&v| (v * v) as f64).sum();
        let scale = 1.0 / ((sum / n as f64 + eps as f64) as f32).sqrt();
        for (v, w) in row.iter_mut().zip(weight) {
            *v = (*v * scale) * w;
        }
    }
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
}
