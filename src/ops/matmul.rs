//! The linear layer `y = W x (+ b)` over a weight in its storage type (`Qcur-{il}`, `attn_out-{il}`,
//! `result_output` ...), with the LoRA adapters applied to it (see [`LoraTerm`]).

use crate::cpu::{matmul, matmul_many, matmul_per_row, WeightView};

/// A linear layer's weight, ggml `[n_in, n_out]`, optional bias `[n_out]`, and the LoRA terms
/// added to its product (none for most callers).
#[derive(Debug, Clone, Copy)]
pub struct Linear<'a> {
    pub w: WeightView<'a>,
    pub n_in: usize,
    pub n_out: usize,
    pub bias: Option<&'a [f32]>,
    pub lora: &'a [LoraTerm<'a>],
}

/// One adapter's term `scale · B·(A·x)` of a linear layer, as llama.cpp's `build_lora_mm` adds it:
/// `A` ggml `[n_in, rank]`, `B` `[rank, n_out]`, each a matmul of its own (so `A·x` is rounded to
/// the weights' activation type before `B` reads it, as ggml does), the product scaled, then added
/// to `W·x` before the bias.
#[derive(Debug, Clone, Copy)]
pub struct LoraTerm<'a> {
    pub a: WeightView<'a>,
    pub b: WeightView<'a>,
    pub rank: usize,
    /// The adapter's scale for this tensor (user scale · alpha / rank; see `model::lora`).
    pub scale: f32,
}

/// `x`: `[n_tok][n_in]` → `y`: `[n_tok][n_out]`.
pub fn linear(x: &[f32], l: &Linear<'_>, y: &mut [f32]) {
    matmul(x, l.w, l.n_in, l.n_out, y);
    add_lora(x, l, y, false);
    add_bias(l, y);
}

/// [`linear`] summed as llama.cpp's `mul_mat_id` sums (an expert's matmul; see `cpu::ggml_matmul`).
pub fn linear_per_row(x: &[f32], l: &Linear<'_>, y: &mut [f32]) {
    matmul_per_row(x, l.w, l.n_in, l.n_out, y);
    add_lora(x, l, y, true);
    add_bias(l, y);
}

/// `y += scale · B·(A·x)` for each term in order (llama.cpp adds each adapter's term to the running
/// sum). `per_row`: sum the adapter's matmuls in the order the main product was summed.
fn add_lora(x: &[f32], l: &Linear<'_>, y: &mut [f32], per_row: bool) {
    let n_tok = x.len() / l.n_in.max(1);
    for t in l.lora {
        let mm = if per_row { matmul_per_row } else { matmul };
        let mut ax = vec![0f32; n_tok * t.rank];
        mm(x, t.a, l.n_in, t.rank, &mut ax);
        let mut bax = vec![0f32; n_tok * l.n_out];
        mm(&ax, t.b, t.rank, l.n_out, &mut bax);
        // ggml_scale, then ggml_add: two roundings, no fused multiply-add.
        for (v, d) in y.iter_mut().zip(&bax) {
            *v += *d * t.scale;
        }
    }
}

/// Several [`linear`]s (or, with `per_row`, [`linear_per_row`]s) of the same `x`, as one
/// parallel dispatch when `x` is one token.
pub fn linear_many(x: &[f32], layers: &mut [(&Linear<'_>, &mut [f32])], per_row: bool) {
    let Some(n_in) = layers.first().map(|(l, _)| l.n_in) else { return };
    assert!(layers.iter().all(|(l, _)| l.n_in == n_in), "linear_many: inputs differ");
    let mut mats: Vec<(WeightView<'_>, &mut [f32])> =
        layers.iter_mut().map(|(l, y)| (l.w, &mut **y)).collect();
    matmul_many(x, n_in, &mut mats, per_row);
    for (l, y) in layers.iter_mut() {
        add_lora(x, l, y, per_row);
        add_bias(l, y);
    }
}

fn add_bias(l: &Linear<'_>, y: &mut [f32]) {
    if let Some(b) = l.bias {
        for row in y.chunks_exact_mut(l.n_out) {
            for (v, bv) in row.iter_mut().zip(b) {
                *v += bv;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_rng::Rng;

    #[test]
    fn linear_with_bias_matches_f64() {
        let mut rng = Rng::new(3);
        let (n_tok, n_in, n_out) = (4, 48, 20);
        let x = rng.vec(n_tok * n_in, 1.0);
        let w = rng.vec(n_in * n_out, 1.0);
        let b = rng.vec(n_out, 1.0);
        let l = Linear { w: WeightView::F32(&w), n_in, n_out, bias: Some(&b), lora: &[] };
        let mut y = vec![0f32; n_tok * n_out];
        linear(&x, &l, &mut y);
        for t in 0..n_tok {
            for o in 0..n_out {
                let want: f64 = b[o] as f64
                    + (0..n_in).map(|i| w[o * n_in + i] as f64 * x[t * n_in + i] as f64).sum::<f64>();
                assert!((y[t * n_out + o] as f64 - want).abs() < 1e-5);
            }
        }
    }
}
