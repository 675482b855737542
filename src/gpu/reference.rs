//! Naive f64 references for every GPU kernel, written for clarity, not speed. The device check
//! compares the kernels with these on fresh random inputs; they are tested here on hand-worked
//! values. Shapes follow the kernels (row-major, the last index contiguous).

/// ‖got − want‖ / ‖want‖ (relative L2 error). NaN anywhere, or a length mismatch, gives infinity.
pub fn rel_error(got: &[f32], want: &[f32]) -> f64 {
    if got.len() != want.len() || got.iter().chain(want).any(|v| v.is_nan()) {
        return f64::INFINITY;
    }
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (&g, &w) in got.iter().zip(want) {
        diff += (g as f64 - w as f64).powi(2);
        norm += (w as f64).powi(2);
    }
    if norm == 0.0 {
        return if diff == 0.0 { 0.0 } else { f64::INFINITY };
    }
    (diff / norm).sqrt()
}

/// Seeded xorshift64* source of test inputs (never zeros: uniform in (-1, 1) minus a tiny hole).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// x: [n_rows][n], w: [n].
pub fn rmsnorm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let n = w.len();
    let mut y = Vec::with_capacity(x.len());
    for row in x.chunks(n) {
        let ms = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / n as f64;
        let inv = 1.0 / (ms + eps as f64).sqrt();
        y.extend(row.iter().zip(w).map(|(&v, &g)| (v as f64 * inv * g as f64) as f32));
    }
    y
}

/// RoPE settings of the reference (as the kernel's).
#[derive(Clone, Copy)]
pub struct Rope<'a> {
    pub n_rot: usize,
    pub freq_base: f32,
    pub freq_scale: f32,
    pub neox: bool,
    /// [n_rot/2] divisors of the angles.
    pub freq_factors: Option<&'a [f32]>,
}

/// x: [n_tokens][n_head][head_dim], pos: [n_tokens]; the rotated copy. Pair i turns by
/// pos · freq_scale · freq_base^(-2i/n_rot) / freq_factors[i].
pub fn rope(x: &[f32], pos: &[i32], n_head: usize, head_dim: usize, r: &Rope) -> Vec<f32> {
    let Rope { n_rot, freq_base, freq_scale, neox, freq_factors } = *r;
    let mut y = x.to_vec();
    let half = n_rot / 2;
    for (t, &p) in pos.iter().enumerate() {
        for h in 0..n_head {
            let v = &mut y[(t * n_head + h) * head_dim..][..head_dim];
            for i in 0..half {
                let ff = freq_factors.map_or(1.0, |f| f[i] as f64);
                let power = (freq_base as f64).powf(-2.0 * i as f64 / n_rot as f64);
                let theta = p as f64 * freq_scale as f64 * power / ff;
                let (s, c) = theta.sin_cos();
                let (a, b) = if neox { (i, i + half) } else { (2 * i, 2 * i + 1) };
                let (x0, x1) = (v[a] as f64, v[b] as f64);
                v[a] = (x0 * c - x1 * s) as f32;
                v[b] = (x0 * s + x1 * c) as f32;
            }
        }
    }
    y
}

/// Row-wise softmax of scale * x, rows of n.
pub fn softmax(x: &[f32], n: usize, scale: f32) -> Vec<f32> {
    let mut y = Vec::with_capacity(x.len());
    for row in x.chunks(n) {
        let scaled: Vec<f64> = row.iter().map(|&v| v as f64 * scale as f64).collect();
        let m = scaled.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = scaled.iter().map(|v| (v - m).exp()).sum();
        y.extend(scaled.iter().map(|v| ((v - m).exp() / z) as f32));
    }
    y
}

pub fn swiglu(gate: &[f32], up: &[f32]) -> Vec<f32> {
    gate.iter()
        .zip(up)
        .map(|(&g, &u)| {
            let g = g as f64;
            (g / (1.0 + (-g).exp()) * u as f64) as f32
        })
        .collect()
}

pub fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(&x, &y)| (x as f64 + y as f64) as f32).collect()
}

/// table: [n_vocab][n_embd] (already widened to f32) -> [ids.len()][n_embd].
pub fn get_rows(table: &[f32], ids: &[u32], n_embd: usize) -> Vec<f32> {
    ids.iter().flat_map(|&id| table[id as usize * n_embd..][..n_embd].iter().copied()).collect()
}

/// Causal attention. q: [n_tokens][n_head][hd]; k, v: [n_keys][n_kv_head][hd] with
/// n_keys >= pos0 + n_tokens (the cache values, already rounded to f16 and widened).
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    pos0: usize,
    scale: f32,
) -> Vec<f32> {
    let n_tokens = q.len() / (n_head * head_dim);
    let group = n_head / n_kv_head;
    let mut out = vec![0f32; q.len()];
    for t in 0..n_tokens {
        for h in 0..n_head {
            let qv = &q[(t * n_head + h) * head_dim..][..head_dim];
            let kvh = h / group;
            let n_keys = pos0 + t + 1;
            let scores: Vec<f64> = (0..n_keys)
                .map(|j| {
                    let kr = &k[(j * n_kv_head + kvh) * head_dim..][..head_dim];
                    qv.iter().zip(kr).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() * scale as f64
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = scores.iter().map(|s| (s - m).exp()).sum();
            let o = &mut out[(t * n_head + h) * head_dim..][..head_dim];
            for (d, od) in o.iter_mut().enumerate() {
                let acc: f64 = (0..n_keys)
                    .map(|j| (scores[j] - m).exp() * v[(j * n_kv_head + kvh) * head_dim + d] as f64)
                    .sum();
                *od = (acc / z) as f32;
            }
        }
    }
    out
}

/// Router: per token, softmax of the logits, the k best (ties to the lower id), optionally
/// renormalised. Returns ([n_tokens][k] ids, [n_tokens][k] weights).
pub fn moe_topk(logits: &[f32], n_expert: usize, k: usize, renorm: bool) -> (Vec<i32>, Vec<f32>) {
    let (mut ids, mut weights) = (Vec::new(), Vec::new());
    for row in logits.chunks(n_expert) {
        let probs = softmax(row, n_expert, 1.0);
        let mut order: Vec<usize> = (0..n_expert).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        let picked: f64 = order[..k].iter().map(|&e| probs[e] as f64).sum();
        for &e in &order[..k] {
            ids.push(e as i32);
            let p = probs[e] as f64;
            weights.push(if renorm { (p / picked) as f32 } else { p as f32 });
        }
    }
    (ids, weights)
}

/// out[t] = Σ_j w[t][j] · buf[t·k + j]; buf: [n_tokens·k][n_embd].
pub fn moe_weighted_sum(buf: &[f32], weights: &[f32], k: usize, n_embd: usize) -> Vec<f32> {
    let n_tokens = weights.len() / k;
    let mut out = vec![0f32; n_tokens * n_embd];
    for t in 0..n_tokens {
        for i in 0..n_embd {
            let s: f64 =
                (0..k).map(|j| weights[t * k + j] as f64 * buf[(t * k + j) * n_embd + i] as f64).sum();
            out[t * n_embd + i] = s as f32;
        }
    }
    out
}

/// The linear layer: y[t][o] = Σ_i x[t][i] · w[o][i]; x: [n_tokens][n_in], w: [n_out][n_in].
pub fn linear(x: &[f32], w: &[f32], n_in: usize) -> Vec<f32> {
    let n_out = w.len() / n_in;
    let mut y = Vec::with_capacity(x.len() / n_in * n_out);
    for xr in x.chunks(n_in) {
        for wr in w.chunks(n_in) {
            y.push(xr.iter().zip(wr).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() as f32);
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
    }

    #[test]
    fn rmsnorm_by_hand() {
        // mean square of (3, 4) = 12.5
        let y = rmsnorm(&[3.0, 4.0, -1.0, 1.0], &[1.0, 2.0], 0.0);
        let inv = 1.0 / 12.5f32.sqrt();
        assert!(close(&y, &[3.0 * inv, 8.0 * inv, -1.0, 2.0]), "{y:?}");
    }

    #[test]
    fn rope_turns_pairs_by_position() {
        // head_dim 4, n_rot 4, base 100: pair 0 turns by p, pair 1 by p / 10.
        let x = [1.0, 0.0, 0.0, 2.0];
        let (c0, s0, c1, s1) = (3f32.cos(), 3f32.sin(), 0.3f32.cos(), 0.3f32.sin());
        let r = Rope { n_rot: 4, freq_base: 100.0, freq_scale: 1.0, neox: false, freq_factors: None };
        let normal = rope(&x, &[3], 1, 4, &r);
        assert!(close(&normal, &[c0, s0, -2.0 * s1, 2.0 * c1]), "{normal:?}");
        // NeoX pairs (0, 2) and (1, 3).
        let neox = rope(&x, &[3], 1, 4, &Rope { neox: true, ..r });
        assert!(close(&neox, &[c0, -2.0 * s1, s0, 2.0 * c1]), "{neox:?}");
        // Position 0 changes nothing; dims past n_rot are left alone.
        assert!(close(&rope(&x, &[0], 1, 4, &r), &x));
        assert!(close(&rope(&x, &[3], 1, 4, &Rope { n_rot: 2, ..r }), &[c0, s0, 0.0, 2.0]));
        // Frequency factors divide the angles: pair 1 by 3 turns by 0.1.
        let slowed = rope(&x, &[3], 1, 4, &Rope { freq_factors: Some(&[1.0, 3.0]), ..r });
        assert!(close(&slowed, &[c0, s0, -2.0 * 0.1f32.sin(), 2.0 * 0.1f32.cos()]), "{slowed:?}");
    }

    #[test]
    fn softmax_swiglu_add_by_hand() {
        let y = softmax(&[0.0, 2f32.ln(), 5.0, 5.0], 2, 1.0);
        assert!(close(&y, &[1.0 / 3.0, 2.0 / 3.0, 0.5, 0.5]), "{y:?}");
        let s = swiglu(&[1.0, -2.0], &[3.0, 0.5]);
        let sig = |v: f32| 1.0 / (1.0 + (-v).exp());
        assert!(close(&s, &[3.0 * sig(1.0), -2.0 * sig(-2.0) * 0.5]));
        assert!(close(&add(&[1.5, -2.0], &[0.25, 4.0]), &[1.75, 2.0]));
        assert!(close(&get_rows(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 0], 2), &[5.0, 6.0, 1.0, 2.0]));
    }

    #[test]
    fn attention_by_hand() {
        // One head, head_dim 2; keys (1,0) and (0,1) with values (10,0) and (0,20).
        let k = [1.0, 0.0, 0.0, 1.0];
        let v = [10.0, 0.0, 0.0, 20.0];
        // Query at position 0 sees only the first key.
        assert!(close(&attention(&[0.3, 0.7], &k, &v, 1, 1, 2, 0, 1.0), &[10.0, 0.0]));
        // At position 1, q = (ln 3, 0): weights 3/4 and 1/4.
        let out = attention(&[3f32.ln(), 0.0], &k, &v, 1, 1, 2, 1, 1.0);
        assert!(close(&out, &[7.5, 5.0]), "{out:?}");
        // Two query heads share one KV head.
        let two = attention(&[3f32.ln(), 0.0, 0.0, 0.0], &k, &v, 2, 1, 2, 1, 1.0);
        assert!(close(&two, &[7.5, 5.0, 5.0, 10.0]), "{two:?}");
    }

    #[test]
    fn router_picks_the_best_and_renormalises() {
        let logits = [0.0, 3f32.ln(), 0.0, 2f32.ln()]; // probs 1/7, 3/7, 1/7, 2/7
        let (ids, w) = moe_topk(&logits, 4, 2, true);
        assert_eq!(ids, vec![1, 3]);
        assert!(close(&w, &[0.6, 0.4]), "{w:?}");
        let (ids, w) = moe_topk(&logits, 4, 3, false);
        assert_eq!(ids, vec![1, 3, 0], "ties go to the lower id");
        assert!(close(&w, &[3.0 / 7.0, 2.0 / 7.0, 1.0 / 7.0]), "{w:?}");
        let out = moe_weighted_sum(&[1.0, 2.0, 10.0, 20.0], &[0.5, 0.25], 2, 2);
        assert!(close(&out, &[3.0, 6.0]));
    }

    #[test]
    fn linear_and_error_measure() {
        // w: 2 outputs of 3 inputs
        let y = linear(&[1.0, 2.0, 3.0], &[1.0, 0.0, -1.0, 0.5, 0.5, 0.5], 3);
        assert!(close(&y, &[-2.0, 3.0]));
        assert_eq!(rel_error(&[3.0, 4.0], &[3.0, 4.0]), 0.0);
        assert!((rel_error(&[3.0, 4.5], &[3.0, 4.0]) - 0.1).abs() < 1e-12);
        assert_eq!(rel_error(&[f32::NAN], &[1.0]), f64::INFINITY);
        assert_eq!(rel_error(&[1.0], &[1.0, 2.0]), f64::INFINITY);
        let mut rng = Rng::new(7);
        let v = rng.vec(1000, 1.0);
        assert!(v.iter().all(|x| (-1.0..1.0).contains(x)) && v.iter().any(|&x| x != v[0]));
    }
}
