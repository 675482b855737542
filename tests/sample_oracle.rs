//! rs-llama's samplers against llama.cpp itself: `tests/fixtures/sampler/oracle.txt` was written by a
//! C++ program (oracle.cpp, same folder) that runs libstdc++ sorts, `std::mt19937` +
//! `uniform_real_distribution<double>`, and libllama's sampler chains on generated logits.

use rs_llama::sample::rng::Mt19937;
use rs_llama::sample::stages::{self, Candidates};
use rs_llama::sample::{sort, SamplerChain, SamplerKind, SamplingParams};
use rs_llama::TokenId;
use std::collections::HashMap;

fn oracle() -> HashMap<String, Vec<String>> {
    let text = include_str!("fixtures/sampler/oracle.txt");
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.split_whitespace().map(str::to_string).collect()))
        .collect()
}

fn expect_ids(name: &str) -> Vec<TokenId> {
    oracle()[name].iter().map(|s| s.parse().unwrap_or(u32::MAX)).collect()
}

struct Lcg(u64);

impl Lcg {
    fn next(&mut self, modulo: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % modulo
    }

    fn logits(&mut self, n: usize, coarse: bool) -> Vec<f32> {
        let (m, scale) = if coarse { (1024u64, 64.0f32) } else { (1u64 << 20, 65536.0f32) };
        (0..n).map(|_| (self.next(m) as i64 - (m / 2) as i64) as f32 / scale).collect()
    }
}

/// The oracle's loop: 8 "prompt" accepts, then sample + accept on fresh logits each step.
fn run_chain(params: &SamplingParams, n_vocab: usize, coarse: bool, data_seed: u64) -> Vec<TokenId> {
    let Ok(mut chain) = SamplerChain::new(params, &[]) else { panic!("chain for {params:?}") };
    let mut g = Lcg(data_seed);
    for _ in 0..8 {
        chain.accept(g.next(64) as TokenId);
    }
    (0..64)
        .map(|_| {
            let logits = g.logits(n_vocab, coarse);
            let id = chain.sample(&logits).unwrap_or(u32::MAX);
            chain.accept(id);
            id
        })
        .collect()
}

fn with(samplers: &[SamplerKind], seed: u32) -> SamplingParams {
    SamplingParams { seed, samplers: samplers.to_vec(), ..Default::default() }
}

use SamplerKind::*;

#[test]
fn libstdcxx_tie_orders() {
    let mut g = Lcg(7);
    let v: Vec<(u64, usize)> = (0..300).map(|i| (g.next(9), i)).collect();
    let gt = |a: &(u64, usize), b: &(u64, usize)| a.0 > b.0;
    let mut p = v.clone();
    sort::partial_sort(&mut p, 40, &gt);
    let got: Vec<String> = p[..40].iter().map(|x| x.1.to_string()).collect();
    assert_eq!(got, oracle()["partial_sort_40"]);
    let mut s = v;
    sort::sort(&mut s, &gt);
    let got: Vec<String> = s.iter().map(|x| x.1.to_string()).collect();
    assert_eq!(got, oracle()["sort"]);
}

#[test]
fn uniform_real_distribution_f64() {
    let mut rng = Mt19937::new(42);
    let want: Vec<f64> =
        oracle()["uniform_f64_seed42"].iter().map(|s| s.parse().unwrap_or(f64::NAN)).collect();
    let got: Vec<f64> = (0..want.len()).map(|_| rng.canonical_f64()).collect();
    assert_eq!(got, want);
}

#[test]
fn default_chain() {
    let params = SamplingParams { seed: 1234, ..Default::default() };
    assert_eq!(run_chain(&params, 5000, true, 1), expect_ids("default"));
}

#[test]
fn default_effective_chain_fine_logits() {
    let params = with(&[TopK, TopP, MinP, Temperature], 5);
    assert_eq!(run_chain(&params, 5000, false, 2), expect_ids("default_fine"));
}

#[test]
fn penalties_and_unsorted_top_p() {
    let params = SamplingParams {
        penalty_last_n: 16,
        penalty_repeat: 1.3,
        penalty_freq: 0.2,
        penalty_present: 0.5,
        top_p: 0.9,
        min_p: 0.02,
        temp: 1.0,
        ..with(&[Penalties, TopP, MinP, Temperature], 77)
    };
    assert_eq!(run_chain(&params, 5000, true, 3), expect_ids("penalties_topp_unsorted"));
}

#[test]
fn bucketed_top_k_and_typical() {
    let params = SamplingParams {
        top_k: 200,
        typ_p: 0.9,
        min_keep: 1,
        temp: 0.7,
        ..with(&[TopK, TypicalP, Temperature], 9)
    };
    assert_eq!(run_chain(&params, 5000, true, 4), expect_ids("topk200_typical"));
}

#[test]
fn greedy_with_temp_zero() {
    let params = SamplingParams { temp: 0.0, ..with(&[TopK, TopP, MinP, Temperature], 3) };
    assert_eq!(run_chain(&params, 5000, true, 5), expect_ids("greedy"));
}

#[test]
fn top_n_sigma_min_p_dynatemp() {
    let params = SamplingParams {
        top_n_sigma: 1.5,
        min_p: 0.05,
        temp: 0.8,
        dynatemp_range: 0.5,
        dynatemp_exponent: 1.0,
        ..with(&[TopNSigma, MinP, Temperature], 11)
    };
    assert_eq!(run_chain(&params, 5000, true, 6), expect_ids("nsigma_minp_dynatemp"));
}

#[test]
fn xtc() {
    let params = SamplingParams {
        top_k: 40,
        xtc_probability: 0.5,
        xtc_threshold: 0.05,
        min_keep: 1,
        ..with(&[TopK, Xtc], 21)
    };
    assert_eq!(run_chain(&params, 5000, false, 7), expect_ids("xtc"));
}

#[test]
fn logit_bias_then_chain() {
    let params = SamplingParams {
        seed: 8,
        penalty_repeat: 1.1,
        logit_bias: vec![(3, 2.5), (10, f32::NEG_INFINITY), (4999, 1.0), (42, -0.75)],
        ..with(&[Penalties, TopK, TopP, MinP, Temperature], 8)
    };
    assert_eq!(run_chain(&params, 64, true, 8), expect_ids("logit_bias"));
}

#[test]
fn stage_functions_with_separate_min_keep() {
    let mut g = Lcg(9);
    let mut rng = Mt19937::new(13);
    for _ in 0..8 {
        g.next(64);
    }
    let got: Vec<TokenId> = (0..64)
        .map(|_| {
            let mut cur = Candidates::from_logits(&g.logits(300, true));
            stages::top_p(&mut cur, 0.5, 3);
            stages::min_p(&mut cur, 0.2, 2);
            stages::dist(&mut cur, &mut rng);
            cur.selected.map_or(u32::MAX, |i| cur.data[i].id)
        })
        .collect();
    assert_eq!(got, expect_ids("topp_small_minkeep"));
}
