//! Per-row arithmetic on logits, following llama.cpp's precision choices: logits and their
//! differences in f32, the sum of exponentials in f64.
//!
//! A stored row (`row_len(n_vocab)` u16 values) holds two little-endian f32, `scale` and
//! `min_log_prob`, then one code per vocabulary entry: `log p_i ≈ scale·code_i + min_log_prob`.
//! Logits more than 16 below the maximum share code 0.

use super::stats::KldSums;

/// Width of the log-probability window kept by a stored row (natural-log units).
const WINDOW: f32 = 16.0;
/// Largest code: the row's maximum logit maps to it.
const CODE_MAX: f32 = 65535.0;
/// Base log-probabilities at or below this are left out of the KL sum (llama.cpp's cut-off).
const KLD_FLOOR: f32 = -16.0;

/// u16 values per stored row: 4 for the two f32 header values, n_vocab codes padded to even.
pub fn row_len(n_vocab: usize) -> usize {
    2 * n_vocab.div_ceil(2) + 4
}

/// Maximum (first index on ties) and `Σ exp(l − max)` accumulated in f64.
fn max_and_sum_exp(logits: &[f32]) -> (f32, usize, f64) {
    let mut max = logits[0];
    let mut imax = 0;
    for (i, &l) in logits.iter().enumerate().skip(1) {
        if l > max {
            max = l;
            imax = i;
        }
    }
    let sum: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    (max, imax, sum)
}

/// −log softmax(logits)[next], as the plain perplexity pass computes it.
pub fn nll(logits: &[f32], next: usize) -> f64 {
    let (max, _, sum_exp) = max_and_sum_exp(logits);
    sum_exp.ln() - f64::from(logits[next] - max)
}

/// Encode one row of logits into `row` (`[row_len(n_vocab)]`) and return −log p(next).
pub fn quantize_row(logits: &[f32], next: usize, row: &mut [u16]) -> f64 {
    let (max, _, sum_exp) = max_and_sum_exp(logits);
    let min = logits.iter().copied().fold(logits[0], f32::min).max(max - WINDOW);
    let log_sum_exp = sum_exp.ln() as f32;
    let min_log_prob = min - max - log_sum_exp;
    let scale = (max - min) / CODE_MAX;
    let (head, codes) = row.split_at_mut(4);
    head[..2].copy_from_slice(&split_f32(scale));
    head[2..].copy_from_slice(&split_f32(min_log_prob));
    codes.fill(0);
    if scale != 0.0 {
        let inv_scale = 1.0 / scale;
        for (code, &l) in codes.iter_mut().zip(logits) {
            if l > min {
                // Saturating cast; the product never exceeds CODE_MAX by more than rounding.
                *code = (inv_scale * (l - min)).round_ties_even() as u16;
            }
        }
    }
    f64::from(max + log_sum_exp - logits[next])
}

fn split_f32(v: f32) -> [u16; 2] {
    let bits = v.to_bits();
    [bits as u16, (bits >> 16) as u16]
}

fn join_f32(lo: u16, hi: u16) -> f32 {
    f32::from_bits(u32::from(lo) | (u32::from(hi) << 16))
}

/// Dequantized base log-probability of vocabulary entry `i` of a stored row.
pub fn base_log_prob(row: &[u16], i: usize) -> f32 {
    join_f32(row[0], row[1]) * f32::from(row[4 + i]) + join_f32(row[2], row[3])
}

/// What one scored token contributes to the KL statistics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowComparison {
    /// −log p(next) under our logits.
    pub nll: f32,
    /// −log p(next) under the base row.
    pub nll_base: f32,
    /// KL(base ‖ ours) over the entries the base row keeps.
    pub kld: f64,
    /// p(next) − p_base(next).
    pub p_diff: f32,
    /// Both distributions have the same most likely token.
    pub same_top: bool,
}

/// Compare `logits` (`[n_vocab]`) with a stored base row for the token `next`.
pub fn compare_row(logits: &[f32], base: &[u16], next: usize) -> RowComparison {
    let (max, imax, sum_exp) = max_and_sum_exp(logits);
    let log_sum_exp = sum_exp.ln() as f32;
    let nll = max + log_sum_exp - logits[next];
    let scale = join_f32(base[0], base[1]);
    let min_log_prob = join_f32(base[2], base[3]);
    let codes = &base[4..4 + logits.len()];
    let nll_base = -(scale * f32::from(codes[next]) + min_log_prob);
    // log p_i = logits_i − (max + log_sum_exp)
    let log_norm = max + log_sum_exp;
    let mut kld = 0.0f64;
    let mut imax_base = 0;
    let mut top_base = f32::NEG_INFINITY;
    for (i, (&code, &l)) in codes.iter().zip(logits).enumerate() {
        let log_p_base = scale * f32::from(code) + min_log_prob;
        if i == 0 || log_p_base > top_base {
            top_base = log_p_base;
            imax_base = i;
        }
        if log_p_base > KLD_FLOOR {
            kld += f64::from(log_p_base.exp() * (log_p_base - l + log_norm));
        }
    }
    let p_diff = (-nll).exp() - (-nll_base).exp();
    RowComparison { nll, nll_base, kld, p_diff, same_top: imax == imax_base }
}

/// Fold one comparison into the running sums (llama.cpp's accumulation types).
pub fn accumulate(sums: &mut KldSums, c: &RowComparison) {
    sums.sum_nll += f64::from(c.nll);
    sums.sum_nll2 += f64::from(c.nll * c.nll);
    sums.sum_nll_base += f64::from(c.nll_base);
    sums.sum_nll_base2 += f64::from(c.nll_base * c.nll_base);
    sums.sum_nll_nll_base += f64::from(c.nll * c.nll_base);
    sums.sum_kld += c.kld;
    sums.sum_kld2 += c.kld * c.kld;
    let p_diff2 = f64::from(c.p_diff * c.p_diff);
    sums.sum_p_diff += f64::from(c.p_diff);
    sums.sum_p_diff2 += p_diff2;
    sums.sum_p_diff4 += p_diff2 * p_diff2;
    sums.n_same_top += usize::from(c.same_top);
    sums.count += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        (0..37).map(|i| ((i * 7919) % 101) as f32 * 0.21 - 9.0).collect()
    }

    /// Naive f64 log-softmax.
    fn log_probs(l: &[f32]) -> Vec<f64> {
        let max = l.iter().copied().fold(f32::MIN, f32::max) as f64;
        let lse = l.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln() + max;
        l.iter().map(|&x| x as f64 - lse).collect()
    }

    #[test]
    fn nll_matches_naive_log_softmax() {
        let l = logits();
        let lp = log_probs(&l);
        for next in [0, 5, 36] {
            assert!((nll(&l, next) + lp[next]).abs() < 1e-5);
        }
    }

    #[test]
    fn quantized_row_decodes_to_the_log_probs_within_half_a_step() {
        let l = logits();
        let lp = log_probs(&l);
        let mut row = vec![0u16; row_len(l.len())];
        assert_eq!(row.len(), 2 * 19 + 4);
        let v = quantize_row(&l, 3, &mut row);
        assert!((v + lp[3]).abs() < 1e-5);
        let max = lp.iter().copied().fold(f64::MIN, f64::max);
        let step = 16.0 / 65535.0;
        for (i, &p) in lp.iter().enumerate() {
            let q = f64::from(base_log_prob(&row, i));
            if p > max - 16.0 {
                assert!((q - p).abs() < 0.51 * step + 1e-5, "{i}: {q} vs {p}");
            } else {
                assert!((q - (max - 16.0)).abs() < 1e-4);
            }
        }
        assert_eq!(*row.last().unwrap(), 0, "odd vocabulary: the pad code stays 0");
    }

    #[test]
    fn comparing_a_row_with_itself_gives_almost_no_divergence() {
        // Within the 16-nat window nothing is cut, so only the rounding of the codes remains.
        let l: Vec<f32> = logits().iter().map(|x| 0.5 * x).collect();
        let mut row = vec![0u16; row_len(l.len())];
        quantize_row(&l, 7, &mut row);
        let c = compare_row(&l, &row, 7);
        // Each stored log-prob is off by at most half a code step, and so is their p-weighted mean.
        let half_step = 0.5 * f64::from(join_f32(row[0], row[1]));
        assert!(c.kld.abs() <= half_step * 1.01, "{} vs {half_step}", c.kld);
        assert!(c.p_diff.abs() < 1e-5);
        assert!((c.nll - c.nll_base).abs() < 1e-3);
        assert!(c.same_top);
    }

    #[test]
    fn divergence_matches_naive_kl_for_a_shifted_distribution() {
        let base = logits();
        let ours: Vec<f32> =
            base.iter().enumerate().map(|(i, &x)| x + 0.3 * ((i % 5) as f32 - 2.0)).collect();
        let mut row = vec![0u16; row_len(base.len())];
        quantize_row(&base, 1, &mut row);
        let c = compare_row(&ours, &row, 1);
        let (p, q) = (log_probs(&base), log_probs(&ours));
        let pmax = p.iter().copied().fold(f64::MIN, f64::max);
        let want: f64 =
            p.iter().zip(&q).filter(|(a, _)| **a > pmax - 16.0).map(|(a, b)| a.exp() * (a - b)).sum();
        assert!((c.kld - want).abs() < 1e-4, "{} vs {want}", c.kld);
        assert!(c.kld > 1e-3);
        assert!((f64::from(c.p_diff) - (q[1].exp() - p[1].exp())).abs() < 1e-4);
    }
}
