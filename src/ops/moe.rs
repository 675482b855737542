//! Mixture-of-experts routing (`ffn_moe_logits-{il}`, `ffn_moe_probs-{il}`, `ffn_moe_weights-{il}`).

use crate::cpu::ggml_dot::vec_dot_f32;
use crate::cpu::numerics::{self, Numerics};
use crate::cpu::vexp::exp_shifted_sum;

/// How router logits become expert probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpertGating {
    /// Softmax over all experts, then top-k (LLaMA/Mixtral, Qwen2-MoE).
    Softmax,
    /// An independent sigmoid per expert (GLM-4.5, DeepSeek-V3).
    Sigmoid,
    /// Top-k of the logits themselves, then a softmax over the k chosen (gpt-oss; llama.cpp's
    /// `SOFTMAX_WEIGHT`).
    SoftmaxOfChosen,
}

/// How a layer's router picks and weights its experts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExpertRouting {
    pub gating: ExpertGating,
    /// The experts are chosen by the raw logits rather than the probabilities (Llama 4).
    pub select_on_logits: bool,
    /// The `k` chosen probabilities are divided by their sum.
    pub normalize: bool,
    /// Then multiplied by this (1: not scaled).
    pub scale: f32,
    /// The weights scale each expert's input instead of its output (Llama 4).
    pub weight_inputs: bool,
    /// Experts are chosen only from the best groups (DeepSeek-V3).
    pub groups: Option<ExpertGroups>,
}

/// `n_group` groups of consecutive experts; a token's experts come from the `n_used` groups whose
/// two best selection scores sum highest (DeepSeek-V3's `n_group` / `topk_group`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpertGroups {
    pub n_group: usize,
    pub n_used: usize,
}

impl ExpertGroups {
    /// `selection` with the experts outside the chosen groups set to −∞.
    fn mask(&self, selection: &mut [f32]) {
        let per_group = selection.len() / self.n_group;
        let top2 = |g: &[f32]| {
            let (mut a, mut b) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
            for &x in g {
                if x > a {
                    (a, b) = (x, a);
                } else if x > b {
                    b = x;
                }
            }
            a + b
        };
        let scores: Vec<f32> = selection.chunks_exact(per_group).map(top2).collect();
        let mut order: Vec<usize> = (0..self.n_group).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        for &g in &order[self.n_used.min(self.n_group)..] {
            selection[g * per_group..(g + 1) * per_group].fill(f32::NEG_INFINITY);
        }
    }
}

impl ExpertRouting {
    /// Softmax over the experts, optionally renormalised; weights applied to the outputs.
    pub fn softmax(normalize: bool) -> ExpertRouting {
        ExpertRouting {
            gating: ExpertGating::Softmax,
            select_on_logits: false,
            normalize,
            scale: 1.0,
            weight_inputs: false,
            groups: None,
        }
    }
}

/// The router's choice for one token: `k` experts, best first, with their weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub experts: Vec<usize>,
    pub weights: Vec<f32>,
}

/// Smallest divisor when renormalising the selected weights (as llama.cpp clamps the sum).
const MIN_WEIGHT_SUM: f32 = 1.0 / 16384.0; // 2^-14, the smallest normal f16

/// Route each token: `logits` is `[n_tok][n_expert]`. The `k` experts with the highest
/// probabilities (plus `selection_bias` `[n_expert]` where given: it only decides who wins) are
/// weighted by their probabilities, renormalised and scaled as `routing` says.
pub fn route(
    logits: &[f32],
    n_expert: usize,
    k: usize,
    routing: &ExpertRouting,
    selection_bias: Option<&[f32]>,
) -> Vec<Route> {
    logits
        .chunks_exact(n_expert)
        .map(|row| {
            let probs = match routing.gating {
                ExpertGating::Softmax => softmax(row),
                ExpertGating::Sigmoid => row.iter().map(|&x| 1.0 / (1.0 + (-x).exp())).collect(),
                ExpertGating::SoftmaxOfChosen => row.to_vec(),
            };
            let mut selection: Vec<f32> = match selection_bias {
                _ if routing.select_on_logits => row.to_vec(),
                Some(b) => probs.iter().zip(b).map(|(p, b)| p + b).collect(),
                None => probs.clone(),
            };
            if let Some(g) = routing.groups {
                g.mask(&mut selection);
            }
            let mut order: Vec<usize> = (0..n_expert).collect();
            // Stable: on equal scores the lower expert id wins.
            order.sort_by(|&a, &b| selection[b].total_cmp(&selection[a]));
            order.truncate(k);
            let mut weights: Vec<f32> = order.iter().map(|&e| probs[e]).collect();
            if routing.gating == ExpertGating::SoftmaxOfChosen {
                weights = softmax(&weights);
            }
            if routing.normalize {
                // Summed in f64 and rounded once, as ggml's `sum_rows`.
                let sum = (weights.iter().map(|w| *w as f64).sum::<f64>() as f32).max(MIN_WEIGHT_SUM);
                weights.iter_mut().for_each(|w| *w /= sum);
            }
            if routing.scale != 1.0 && routing.scale != 0.0 {
                weights.iter_mut().for_each(|w| *w *= routing.scale);
            }
            Route { experts: order, weights }
        })
        .collect()
}

/// Qwen2-MoE's shared-expert gate per token: `sigmoid(gate_inp · x_t)`; `x` is `[n_tok][n_embd]`,
/// `gate_inp` `[n_embd]`. The dot product is a one-output matmul, which ggml always sums as its
/// one-row f32 dot product.
pub fn shared_expert_gate(x: &[f32], gate_inp: &[f32]) -> Vec<f32> {
    let ggml = numerics::active() == Numerics::Ggml;
    x.chunks_exact(gate_inp.len())
        .map(|row| {
            if ggml {
                // llama.cpp writes this sigmoid as silu(g) / g (NaN at g = 0, as there).
                let g = vec_dot_f32(row, gate_inp);
                (g / (1.0 + (-g).exp())) / g
            } else {
                let g: f32 = row.iter().zip(gate_inp).map(|(a, b)| a * b).sum();
                1.0 / (1.0 + (-g).exp())
            }
        })
        .collect()
}

/// f32 softmax; the normaliser is summed in f64 and applied as one f32 reciprocal. Under `ggml`
/// numerics the exponentials are ggml's vector `exp` (see `cpu::vexp`).
pub fn softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut e = row.to_vec();
    let sum = if numerics::active() == Numerics::Ggml {
        exp_shifted_sum(&mut e, max)
    } else {
        e.iter_mut()
            .map(|x| {
                *x = (*x - max).exp();
                *x as f64
            })
            .sum()
    };
    let inv = (1.0 / sum) as f32;
    e.iter().map(|&x| x * inv).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_rng::Rng;

    #[test]
    fn route_matches_f64_softmax_topk_renormalised() {
        let mut rng = Rng::new(17);
        let (n_tok, n_expert, k) = (5, 8, 2);
        let logits = rng.vec(n_tok * n_expert, 3.0);
        for normalize in [true, false] {
            let routing = ExpertRouting::softmax(normalize);
            let routes = route(&logits, n_expert, k, &routing, None);
            for (t, r) in routes.iter().enumerate() {
                let row: Vec<f64> =
                    logits[t * n_expert..(t + 1) * n_expert].iter().map(|&x| x as f64).collect();
                let z: f64 = row.iter().map(|x| x.exp()).sum();
                let p: Vec<f64> = row.iter().map(|x| x.exp() / z).collect();
                let mut idx: Vec<usize> = (0..n_expert).collect();
                idx.sort_by(|&a, &b| p[b].partial_cmp(&p[a]).unwrap());
                assert_eq!(r.experts, idx[..k].to_vec());
                let sel_sum: f64 = idx[..k].iter().map(|&e| p[e]).sum();
                for (w, &e) in r.weights.iter().zip(&idx[..k]) {
                    let want = if normalize { p[e] / sel_sum } else { p[e] };
                    assert!((*w as f64 - want).abs() < 1e-6, "{w} vs {want}");
                }
            }
        }
    }

    #[test]
    fn qwen2moe_routing_is_not_renormalised() {
        // Top-2 of a softmax over 6 experts: the weights are the plain probabilities, summing to < 1.
        let logits = [0.3f32, -1.2, 2.0, 0.9, -0.4, 1.7];
        let routing = ExpertRouting::softmax(false);
        let r = &route(&logits, 6, 2, &routing, None)[0];
        let z: f64 = logits.iter().map(|&x| (x as f64).exp()).sum();
        assert_eq!(r.experts, vec![2, 5]);
        for (w, e) in r.weights.iter().zip([2usize, 5]) {
            assert!((*w as f64 - (logits[e] as f64).exp() / z).abs() < 1e-7);
        }
        assert!(r.weights.iter().sum::<f32>() < 0.9);
    }

    /// GLM-4.5's routing against an f64 reference: sigmoid scores, the biased scores choose, the
    /// unbiased ones weigh, renormalised, then scaled.
    #[test]
    fn sigmoid_routing_chooses_by_biased_scores_and_weighs_by_plain_ones() {
        let mut rng = Rng::new(29);
        let (n_tok, n_expert, k, scale) = (6, 16, 4, 2.5f32);
        let logits = rng.vec(n_tok * n_expert, 2.0);
        let bias = rng.vec(n_expert, 0.3);
        let routing = ExpertRouting {
            gating: ExpertGating::Sigmoid,
            normalize: true,
            scale,
            ..ExpertRouting::softmax(true)
        };
        let routes = route(&logits, n_expert, k, &routing, Some(&bias));
        let mut bias_mattered = false;
        for (t, r) in routes.iter().enumerate() {
            let p: Vec<f64> = logits[t * n_expert..(t + 1) * n_expert]
                .iter()
                .map(|&x| 1.0 / (1.0 + (-(x as f64)).exp()))
                .collect();
            let by = |score: &dyn Fn(usize) -> f64| {
                let mut idx: Vec<usize> = (0..n_expert).collect();
                idx.sort_by(|&a, &b| score(b).partial_cmp(&score(a)).unwrap());
                idx.truncate(k);
                idx
            };
            let chosen = by(&|e| p[e] + bias[e] as f64);
            bias_mattered |= chosen != by(&|e| p[e]);
            assert_eq!(r.experts, chosen);
            let sum: f64 = chosen.iter().map(|&e| p[e]).sum();
            for (w, &e) in r.weights.iter().zip(&chosen) {
                let want = p[e] / sum * scale as f64;
                assert!((*w as f64 - want).abs() < 1e-6, "{w} vs {want}");
            }
        }
        assert!(bias_mattered, "the test's bias never changed a choice");
    }

    /// gpt-oss: the k largest logits win, their weights a softmax over those k alone.
    #[test]
    fn softmax_of_the_chosen_logits() {
        let logits = [0.3f32, -1.2, 2.0, 0.9, -0.4, 1.7];
        let routing =
            ExpertRouting { gating: ExpertGating::SoftmaxOfChosen, ..ExpertRouting::softmax(false) };
        let r = &route(&logits, 6, 3, &routing, None)[0];
        assert_eq!(r.experts, vec![2, 5, 3]);
        let z: f64 = [2.0f64, 1.7, 0.9].iter().map(|x| x.exp()).sum();
        for (w, x) in r.weights.iter().zip([2.0f64, 1.7, 0.9]) {
            assert!((*w as f64 - x.exp() / z).abs() < 1e-6, "{w}");
        }
    }

    /// DeepSeek-V3: groups ranked by the sum of their two best biased scores; only the best
    /// `n_used` groups' experts may be chosen. Against an f64 reference on random scores.
    #[test]
    fn grouped_routing_chooses_only_from_the_best_groups() {
        let mut rng = Rng::new(31);
        let (n_tok, n_expert, k, n_group, n_used) = (8, 16, 3, 4, 2);
        let logits = rng.vec(n_tok * n_expert, 2.0);
        let bias = rng.vec(n_expert, 0.2);
        let routing = ExpertRouting {
            gating: ExpertGating::Sigmoid,
            groups: Some(ExpertGroups { n_group, n_used }),
            ..ExpertRouting::softmax(true)
        };
        let routes = route(&logits, n_expert, k, &routing, Some(&bias));
        let mut groups_mattered = false;
        for (t, r) in routes.iter().enumerate() {
            let s: Vec<f64> = (0..n_expert)
                .map(|e| 1.0 / (1.0 + (-(logits[t * n_expert + e] as f64)).exp()) + bias[e] as f64)
                .collect();
            let per = n_expert / n_group;
            let score = |g: usize| {
                let mut v: Vec<f64> = s[g * per..(g + 1) * per].to_vec();
                v.sort_by(|a, b| b.partial_cmp(a).unwrap());
                v[0] + v[1]
            };
            let mut gs: Vec<usize> = (0..n_group).collect();
            gs.sort_by(|&a, &b| score(b).partial_cmp(&score(a)).unwrap());
            let allowed = |e: usize| gs[..n_used].contains(&(e / per));
            let mut idx: Vec<usize> = (0..n_expert).filter(|&e| allowed(e)).collect();
            idx.sort_by(|&a, &b| s[b].partial_cmp(&s[a]).unwrap());
            let mut free: Vec<usize> = (0..n_expert).collect();
            free.sort_by(|&a, &b| s[b].partial_cmp(&s[a]).unwrap());
            groups_mattered |= free[..k] != idx[..k];
            assert_eq!(r.experts, idx[..k].to_vec(), "token {t}");
        }
        assert!(groups_mattered, "the groups never changed a choice");
    }

    #[test]
    fn shared_expert_gate_matches_f64_sigmoid() {
        let mut rng = Rng::new(23);
        let (n_tok, n_embd) = (5, 64);
        let x = rng.vec(n_tok * n_embd, 2.0);
        let g = rng.vec(n_embd, 0.5);
        let got = shared_expert_gate(&x, &g);
        for t in 0..n_tok {
            let d: f64 = (0..n_embd).map(|i| x[t * n_embd + i] as f64 * g[i] as f64).sum();
            let want = 1.0 / (1.0 + (-d).exp());
            assert!((got[t] as f64 - want).abs() < 1e-6, "{} vs {want}", got[t]);
        }
    }
}
