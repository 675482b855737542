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
    /// YaRN's blend of interpolated and extrapolated angles, if the model scales rope that way.
    pub yarn: Option<Yarn>,
}

/// YaRN as ggml applies it: pair `i`'s angle blends the interpolated one (`freq_scale · θ`) into
/// the extrapolated one (`θ`) by a ramp between the correction dims, and cos and sin are scaled
/// by `attn_factor · (1 + 0.1 · ln(1 / freq_scale))`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Yarn {
    pub ext_factor: f32,
    /// llama.cpp's `yarn_attn_factor` (ggml's `mscale` before its own correction).
    pub attn_factor: f32,
    /// Pairs below `corr_dims[0]` keep the extrapolated angle, above `corr_dims[1]` the
    /// interpolated one.
    pub corr_dims: [f32; 2],
}

impl Yarn {
    /// ggml's correction dims for a rope of `n_rot` dims trained on `n_ctx_orig` positions.
    pub fn corr_dims(
        n_rot: usize,
        n_ctx_orig: usize,
        freq_base: f32,
        beta_fast: f32,
        beta_slow: f32,
    ) -> [f32; 2] {
        let dim = |n_rotations: f32| {
            n_rot as f32 * (n_ctx_orig as f32 / (n_rotations * 2.0 * std::f32::consts::PI)).ln()
                / (2.0 * freq_base.ln())
        };
        [dim(beta_fast).floor().max(0.0), dim(beta_slow).ceil().min(n_rot as f32 - 1.0)]
    }
}

impl RopeParams {
    /// `[n_rot/2]` (cos, sin) for one position. `fused`: ggml built with FMA contracts the
    /// blend and the magnitude correction of YaRN into fused multiply-adds.
    fn angles(&self, pos: usize, fused: bool) -> Vec<(f32, f32)> {
        let step = self.freq_base.powf(-2.0 / self.n_rot as f32);
        let mut theta = pos as f32;
        let mul_add = |a: f32, b: f32, c: f32| if fused { a.mul_add(b, c) } else { a * b + c };
        let mscale = match self.yarn {
            Some(y) if y.ext_factor != 0.0 => y.attn_factor * mul_add(0.1, (1.0 / self.freq_scale).ln(), 1.0),
            Some(y) => y.attn_factor,
            None => 1.0,
        };
        (0..self.n_rot / 2)
            .map(|i| {
                let ff = self.freq_factors.as_ref().map_or(1.0, |f| f[i]);
                let extrap = theta / ff;
                let mut t = self.freq_scale * extrap;
                if let Some(y) = self.yarn.filter(|y| y.ext_factor != 0.0) {
                    let [low, high] = y.corr_dims;
                    let ramp = 1.0 - ((i as f32 - low) / (high - low).max(0.001)).clamp(0.0, 1.0);
                    let mix = ramp * y.ext_factor;
                    t = mul_add(t, 1.0 - mix, extrap * mix);
                }
                theta *= step;
                if self.yarn.is_some() {
                    (t.cos() * mscale, t.sin() * mscale)
                } else {
                    (t.cos(), t.sin())
                }
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
        let cs = p.angles(pos, fused);
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
                    let extrap = ps as f64 * (p.freq_base as f64).powf(-2.0 * i as f64 / p.n_rot as f64) / ff;
                    let mut theta = p.freq_scale as f64 * extrap;
                    let mut mscale = 1.0;
                    if let Some(y) = p.yarn {
                        let [lo, hi] = y.corr_dims.map(|d| d as f64);
                        let ramp = 1.0 - ((i as f64 - lo) / (hi - lo).max(0.001)).clamp(0.0, 1.0);
                        let mix = ramp * y.ext_factor as f64;
                        theta = theta * (1.0 - mix) + extrap * mix;
                        mscale = y.attn_factor as f64 * (1.0 + 0.1 * (1.0 / p.freq_scale as f64).ln());
                    }
                    let (cos, sin) = (theta.cos() * mscale, theta.sin() * mscale);
                    let (a, b) = match p.style {
                        RopeStyle::Norm => (2 * i, 2 * i + 1),
                        RopeStyle::Neox => (i, i + p.n_rot / 2),
                    };
                    let (x0, x1) = (x[base + a] as f64, x[base + b] as f64);
                    out[base + a] = x0 * cos - x1 * sin;
                    out[base + b] = x0 * sin + x1 * cos;
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
                let p = RopeParams { style, n_rot, freq_base: 10000.0, freq_scale, freq_factors, yarn: None };
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

    /// gpt-oss's YaRN (factor 32 over 4096 trained positions) against the formula in f64; and
    /// its correction dims as ggml computes them for a 64-dim head (8 and 18 at base 150000).
    #[test]
    fn yarn_matches_f64_and_its_correction_dims() {
        let corr = Yarn::corr_dims(64, 4096, 150000.0, 32.0, 1.0);
        assert_eq!(corr, [8.0, 18.0]);
        let mut rng = Rng::new(5);
        let (n_heads, hd) = (2, 64);
        let positions = [0usize, 3, 100, 4000, 60000];
        let x = rng.vec(positions.len() * n_heads * hd, 1.0);
        let yarn = Some(Yarn { ext_factor: 1.0, attn_factor: 1.0, corr_dims: corr });
        let p = RopeParams {
            style: RopeStyle::Neox,
            n_rot: 64,
            freq_base: 150000.0,
            freq_scale: 1.0 / 32.0,
            freq_factors: None,
            yarn,
        };
        let mut y = x.clone();
        rope(&mut y, &positions, n_heads, hd, &p);
        let want = reference(&x, &positions, n_heads, hd, &p);
        let mut moved = false;
        for (i, (g, w)) in y.iter().zip(&want).enumerate() {
            // Angles of 60000 positions carry ~4e-3 of f32 error in radians, as in ggml.
            assert!((*g as f64 - w).abs() < 2e-2, "element {i}: {g} vs {w}");
            moved |= (g - x[i]).abs() > 1e-3;
        }
        assert!(moved);
    }
}
