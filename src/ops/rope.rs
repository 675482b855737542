//! Rotary position embedding as ggml computes it (`Qcur-{il}`, `Kcur-{il}` after rope).
//!
//! For pair `i` of the first `n_rot` dims, `theta_i = pos · freq_scale · base^(-2i/n_rot) / ff_i`
//! (`ff` = optional per-pair frequency factors, LLaMA-3's `rope_freqs`). ggml builds the powers by
//! repeated multiplication in f32 (`theta *= base^(-2/n_rot)`); we do the same so that positions far
//! into the context rotate by the same angles as llama.cpp.

use rayon::prelude::*;

/// Which dimensions form a rotated pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs `(x[2i], x[2i+1])` (LLaMA, Mistral, Mixtral).
    Norm,
    /// Halves `(x[i], x[i + n_rot/2])` (GPT-NeoX, Qwen2, Phi-3).
    Neox,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RopeParams {
    pub style: RopeStyle,
    /// Rotated dims at the start of each head (even, ≤ head_dim).
    pub n_rot: usize,
    pub freq_base: f32,
    /// 1 / linear scaling factor.
    pub freq_scale: f32,
    /// `[n_rot/2]` divisors of the frequencies, if the model has them.
    pub freq_factors: Option<Vec<f32>>,
}

impl RopeParams {
    /// `[n_rot/2]` (cos, sin) for one position.
    fn angles(&self, pos: usize) -> Vec<(f32, f32)> {
        let step = self.freq_base.powf(-2.0 / self.n_rot as f32);
        let mut theta = pos as f32;
        (0..self.n_rot / 2)
            .map(|i| {
                let ff = self.freq_factors.as_ref().map_or(1.0, |f| f[i]);
                let t = self.freq_scale * (theta / ff);
                theta *= step;
                (t.cos(), t.sin())
            })
            .collect()
    }
}

/// Rotate `x` (`[n_tok][n_heads][head_dim]`) in place; token `t` sits at position `positions[t]`.
///
/// llama.cpp built for an x86-64 CPU with FMA (every SIMD path here) contracts each rotation into one
/// fused multiply-add: `x0·c − x1·s` becomes `fma(x0, c, −(x1·s))` and `x0·s + x1·c` becomes
/// `fma(x0, s, x1·c)`. We round the same way, so Q and K match it bit for bit.
pub fn rope(x: &mut [f32], positions: &[usize], n_heads: usize, head_dim: usize, p: &RopeParams) {
    #[cfg(target_arch = "x86_64")]
    let fused = crate::cpu::path::active() != crate::cpu::path::CpuPath::Scalar;
    #[cfg(not(target_arch = "x86_64"))]
    let fused = false;
    let row = n_heads * head_dim;
    let min_rows = super::rmsnorm::PAR_MIN_ELEMS.div_ceil(row.max(1));
    x.par_chunks_exact_mut(row).zip(positions).with_min_len(min_rows).for_each(|(tok, &pos)| {
        let cs = p.angles(pos);
        for head in tok.chunks_exact_mut(head_dim) {
            #[cfg(target_arch = "x86_64")]
            if fused {
                // SAFETY: every non-scalar path was chosen after detecting FMA.
                unsafe { rotate_fused(head, &cs, p.style) };
                continue;
            }
            rotate_plain(head, &cs, p.style);
        }
    });
}

/// The dims of rotated pair `i` among `n_pairs`.
fn pair(style: RopeStyle, i: usize, n_pairs: usize) -> (usize, usize) {
    match style {
        RopeStyle::Norm => (2 * i, 2 * i + 1),
        RopeStyle::Neox => (i, i + n_pairs),
    }
}

fn rotate_plain(head: &mut [f32], cs: &[(f32, f32)], style: RopeStyle) {
    for (i, &(c, s)) in cs.iter().enumerate() {
        let (a, b) = pair(style, i, cs.len());
        let (x0, x1) = (head[a], head[b]);
        head[a] = x0 * c - x1 * s;
        head[b] = x0 * s + x1 * c;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn rotate_fused(head: &mut [f32], cs: &[(f32, f32)], style: RopeStyle) {
    for (i, &(c, s)) in cs.iter().enumerate() {
        let (a, b) = pair(style, i, cs.len());
        let (x0, x1) = (head[a], head[b]);
        head[a] = x0.mul_add(c, -(x1 * s));
        head[b] = x0.mul_add(s, x1 * c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_rng::Rng;

    fn reference(x: &[f32], pos: &[usize], n_heads: usize, hd: usize, p: &RopeParams) -> Vec<f64> {
        let mut out: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        for (t, &ps) in pos.iter().enumerate() {
            for h in 0..n_heads {
                let base = (t * n_heads + h) * hd;
                for i in 0..p.n_rot / 2 {
                    let ff = p.freq_factors.as_ref().map_or(1.0, |f| f[i] as f64);
                    let theta = ps as f64
                        * p.freq_scale as f64
                        * (p.freq_base as f64).powf(-2.0 * i as f64 / p.n_rot as f64)
                        / ff;
                    let (a, b) = match p.style {
                        RopeStyle::Norm => (2 * i, 2 * i + 1),
                        RopeStyle::Neox => (i, i + p.n_rot / 2),
                    };
                    let (x0, x1) = (x[base + a] as f64, x[base + b] as f64);
                    out[base + a] = x0 * theta.cos() - x1 * theta.sin();
                    out[base + b] = x0 * theta.sin() + x1 * theta.cos();
                }
            }
        }
        out
    }

    #[test]
    fn rope_matches_f64_for_both_styles_partial_rotation_and_factors() {
        let mut rng = Rng::new(21);
        let (n_heads, hd) = (3, 16);
        let positions = [0usize, 1, 7, 63, 200];
        let x = rng.vec(positions.len() * n_heads * hd, 1.0);
        for style in [RopeStyle::Norm, RopeStyle::Neox] {
            for (n_rot, freq_scale, factors) in
                [(16, 1.0, None), (8, 0.25, None), (16, 1.0, Some(rng.vec(8, 0.5)))]
            {
                let freq_factors = factors.map(|f: Vec<f32>| f.iter().map(|v| 1.5 + v).collect());
                let p = RopeParams { style, n_rot, freq_base: 10000.0, freq_scale, freq_factors };
                let mut y = x.clone();
                rope(&mut y, &positions, n_heads, hd, &p);
                let want = reference(&x, &positions, n_heads, hd, &p);
                for (g, w) in y.iter().zip(&want) {
                    // f32 angle products drift by a few ulps per pair, as in ggml.
                    assert!((*g as f64 - w).abs() < 2e-4, "{style:?} n_rot={n_rot}: {g} vs {w}");
                }
            }
        }
    }
}
