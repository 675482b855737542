//! Samplers against naive f64 reference implementations written here, on random (non-zero) logits.

use super::rng::Mt19937;
use super::stages::{self, Candidate, Candidates, Penalties};
use super::*;

/// Distinct random logits in [-8, 8): a shuffled grid plus jitter smaller than its step, so no two
/// are equal (ties are the oracle test's business).
fn random_logits(n: usize, seed: u32) -> Vec<f32> {
    let mut rng = Mt19937::new(seed);
    let mut slots: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u32() as usize) % (i + 1);
        slots.swap(i, j);
    }
    let step = 16.0 / n as f64;
    slots.iter().map(|&k| (-8.0 + step * (k as f64 + 0.25 + 0.5 * rng.canonical_f64())) as f32).collect()
}

fn ids(c: &Candidates) -> Vec<TokenId> {
    c.data.iter().map(|x| x.id).collect()
}

/// Reference: ids sorted by logit descending (f64, ties by id — our data has no ties).
fn ref_order(logits: &[f32]) -> Vec<TokenId> {
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| {
        (logits[b] as f64).partial_cmp(&(logits[a] as f64)).unwrap_or(std::cmp::Ordering::Equal)
    });
    idx.into_iter().map(|i| i as TokenId).collect()
}

fn ref_softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

#[test]
fn top_k_keeps_the_k_best_in_order() {
    for (n, k, seed) in [(1000, 40, 1), (5000, 200, 2), (50, 100, 3), (300, 1, 4)] {
        let logits = random_logits(n, seed);
        let mut cur = Candidates::from_logits(&logits);
        stages::top_k(&mut cur, k);
        let want: Vec<TokenId> = ref_order(&logits).into_iter().take(k as usize).collect();
        assert_eq!(ids(&cur), want, "n={n} k={k}");
        assert!(cur.sorted);
    }
}

#[test]
fn softmax_matches_f64() {
    let logits = random_logits(2000, 5);
    let mut cur = Candidates::from_logits(&logits);
    stages::softmax(&mut cur, false);
    let want = ref_softmax(&logits.iter().map(|&l| l as f64).collect::<Vec<_>>());
    for (c, w) in cur.data.iter().zip(&want) {
        assert!((c.p as f64 - w).abs() <= 1e-5 * w + 1e-9, "{} vs {}", c.p, w);
    }
}

/// Reference top-p: sorted by prob, smallest prefix whose mass reaches p (at least min_keep).
fn ref_top_p(logits: &[f32], p: f64, min_keep: usize) -> (usize, f64) {
    let order = ref_order(logits);
    let probs = ref_softmax(&logits.iter().map(|&l| l as f64).collect::<Vec<_>>());
    let mut cum = 0.0;
    for (i, &id) in order.iter().enumerate() {
        cum += probs[id as usize];
        if cum >= p && i + 1 >= min_keep {
            return (i + 1, (cum - p).abs());
        }
    }
    (order.len(), 1.0)
}

#[test]
fn top_p_cuts_at_the_mass_like_f64() {
    let mut checked = 0;
    for seed in 0..40u32 {
        for (n, p, min_keep, pre_sort) in
            [(3000, 0.9f32, 0, false), (500, 0.7, 0, false), (60, 0.95, 5, true)]
        {
            let logits: Vec<f32> = random_logits(n, seed * 7 + 1).iter().map(|l| l * 0.5).collect();
            let (want_len, margin) = ref_top_p(&logits, p as f64, min_keep);
            if margin < 1e-5 {
                continue; // too close to call in f32
            }
            let mut cur = Candidates::from_logits(&logits);
            if pre_sort {
                stages::top_k(&mut cur, n as i32);
            }
            stages::top_p(&mut cur, p, min_keep);
            let want: Vec<TokenId> = ref_order(&logits).into_iter().take(want_len).collect();
            assert_eq!(ids(&cur), want, "seed={seed} n={n} p={p}");
            checked += 1;
        }
    }
    assert!(checked > 100);
}

#[test]
fn min_p_keeps_tokens_above_the_fraction_of_the_best() {
    for seed in 0..30u32 {
        for (p, sorted) in [(0.05f32, false), (0.3, true)] {
            let logits = random_logits(800, 100 + seed);
            let max = logits.iter().cloned().fold(f32::MIN, f32::max) as f64;
            let threshold = max + (p as f64).ln();
            if logits.iter().any(|&l| ((l as f64) - threshold).abs() < 1e-5) {
                continue;
            }
            let mut want: Vec<TokenId> = ref_order(&logits)
                .into_iter()
                .filter(|&id| logits[id as usize] as f64 >= threshold)
                .collect();
            let mut cur = Candidates::from_logits(&logits);
            if sorted {
                stages::top_k(&mut cur, 800);
            }
            stages::min_p(&mut cur, p, 0);
            let mut got = ids(&cur);
            if !sorted {
                // The unsorted path keeps vocabulary order.
                got.sort_unstable();
                want.sort_unstable();
            }
            assert_eq!(got, want, "seed={seed} p={p}");
        }
    }
}

#[test]
fn temperature_divides_and_zero_keeps_the_first_max() {
    let logits = random_logits(100, 9);
    let mut cur = Candidates::from_logits(&logits);
    stages::temperature(&mut cur, 0.7);
    for (c, &l) in cur.data.iter().zip(&logits) {
        assert_eq!(c.logit, l / 0.7);
    }
    let tied = [0.5f32, 2.0, -1.0, 2.0, 1.5];
    let mut cur = Candidates::from_logits(&tied);
    stages::temperature(&mut cur, 0.0);
    let finite: Vec<TokenId> = cur.data.iter().filter(|c| c.logit.is_finite()).map(|c| c.id).collect();
    assert_eq!(finite, [1]);
}

#[test]
fn penalties_count_the_window_once_per_distinct_token() {
    let (last_n, repeat, freq, present) = (5usize, 1.3f32, 0.25f32, 0.6f32);
    let history: [TokenId; 9] = [4, 7, 4, 2, 9, 4, 7, 7, 3];
    let mut pen = Penalties::new(last_n, repeat, freq, present);
    for &t in &history {
        pen.accept(t);
    }
    let logits: Vec<f32> = random_logits(12, 77).iter().map(|l| l * 2.0).collect();
    let mut cur = Candidates::from_logits(&logits);
    pen.apply(&mut cur);
    let window = &history[history.len() - last_n..];
    for (id, c) in cur.data.iter().enumerate() {
        let count = window.iter().filter(|&&t| t as usize == id).count() as f64;
        let mut want = logits[id] as f64;
        if count > 0.0 {
            want = if want <= 0.0 { want * repeat as f64 } else { want / repeat as f64 };
            want -= count * freq as f64 + present as f64;
        }
        assert!((c.logit as f64 - want).abs() < 1e-5, "id {id}: {} vs {want}", c.logit);
    }
}

#[test]
fn typical_keeps_the_locally_typical_set() {
    for seed in 0..20u32 {
        let logits: Vec<f32> = random_logits(200, 300 + seed).iter().map(|l| l * 0.6).collect();
        let p = 0.8f64;
        let probs = ref_softmax(&logits.iter().map(|&l| l as f64).collect::<Vec<_>>());
        let entropy: f64 = probs.iter().map(|q| -q * q.ln()).sum();
        let mut idx: Vec<usize> = (0..probs.len()).collect();
        let score = |i: usize| (-probs[i].ln() - entropy).abs();
        idx.sort_by(|&a, &b| score(a).partial_cmp(&score(b)).unwrap_or(std::cmp::Ordering::Equal));
        let mut cum = 0.0;
        let mut len = idx.len();
        let mut margin = 1.0f64;
        for (i, &j) in idx.iter().enumerate() {
            cum += probs[j];
            if cum > p {
                len = i + 1;
                margin = (cum - p).abs().min((cum - probs[j] - p).abs());
                break;
            }
        }
        if margin < 1e-5 {
            continue;
        }
        let mut cur = Candidates::from_logits(&logits);
        stages::typical(&mut cur, p as f32, 0);
        let mut got = ids(&cur);
        let mut want: Vec<TokenId> = idx[..len].iter().map(|&i| i as TokenId).collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "seed={seed}");
    }
}

#[test]
fn dist_picks_where_the_draw_lands() {
    for seed in 0..50u32 {
        let logits = random_logits(30, 500 + seed);
        let mut cur = Candidates::from_logits(&logits);
        let mut rng = Mt19937::new(seed);
        stages::dist(&mut cur, &mut rng);
        // Reference: the same draw computed from two raw outputs, f64 softmax, inverse CDF.
        let mut raw = Mt19937::new(seed);
        let (lo, hi) = (raw.next_u32() as f64, raw.next_u32() as f64);
        let u = (lo + hi * 4_294_967_296.0) / 18_446_744_073_709_551_616.0;
        let probs = ref_softmax(&logits.iter().map(|&l| l as f64).collect::<Vec<_>>());
        let mut cum = 0.0;
        let mut want = probs.len() - 1;
        let mut margin = 1.0f64;
        for (i, q) in probs.iter().enumerate() {
            cum += q;
            if cum >= u {
                want = i;
                margin = (cum - u).abs().min((cum - q - u).abs());
                break;
            }
        }
        if margin < 1e-6 {
            continue;
        }
        assert_eq!(cur.selected, Some(want), "seed={seed}");
        let total: f64 = cur.data.iter().map(|c| c.p as f64).sum();
        assert!((total - 1.0).abs() < 1e-5);
    }
}

#[test]
fn dist_draws_even_for_one_candidate() {
    let mut cur =
        Candidates { data: vec![Candidate { id: 17, logit: 0.3, p: 0.0 }], sorted: true, selected: None };
    let mut rng = Mt19937::new(11);
    stages::dist(&mut cur, &mut rng);
    assert_eq!(cur.selected, Some(0));
    let mut reference = Mt19937::new(11);
    reference.next_u32();
    reference.next_u32();
    assert_eq!(rng.next_u32(), reference.next_u32());
}

#[test]
fn logit_bias_adds_to_the_named_tokens() {
    let logits = random_logits(10, 21);
    let mut cur = Candidates::from_logits(&logits);
    cur.data.swap(2, 5); // tokens 2 and 5 are no longer at their index: found by search
    stages::logit_bias(&mut cur, &[(2, 1.5), (3, f32::NEG_INFINITY), (9, -0.25)]);
    for c in &cur.data {
        let want = match c.id {
            2 => logits[2] + 1.5,
            3 => f32::NEG_INFINITY,
            9 => logits[9] - 0.25,
            id => logits[id as usize],
        };
        assert_eq!(c.logit, want, "id {}", c.id);
    }
}

#[test]
fn default_chain_and_params_print_like_llama_cpp() {
    let params = SamplingParams { seed: 42, ..Default::default() };
    let chain = SamplerChain::new(&params, &[]).map_err(|e| e.to_string());
    let chain = chain.as_ref().map(|c| (c.describe(), c.seed()));
    assert_eq!(
        chain,
        Ok((
            // As llama-completion logs it (stderr of the run in tests/fixtures/cli/README.md).
            "logits -> ?penalties -> ?dry -> ?top-n-sigma -> top-k -> ?typical -> top-p -> min-p -> ?xtc -> temp-ext -> dist "
                .to_string(),
            42
        ))
    );
    let want = "\trepeat_last_n = 64, repeat_penalty = 1.000, frequency_penalty = 0.000, presence_penalty = 0.000\n\
                \tdry_multiplier = 0.000, dry_base = 1.750, dry_allowed_length = 2, dry_penalty_last_n = 64\n\
                \ttop_k = 40, top_p = 0.950, min_p = 0.050, xtc_probability = 0.000, xtc_threshold = 0.100, typical_p = 1.000, top_n_sigma = -1.000, temp = 0.800\n\
                \tmirostat = 0, mirostat_lr = 0.100, mirostat_ent = 5.000, adaptive_target = -1.000, adaptive_decay = 0.900";
    assert_eq!(params.describe(), want);
}

#[test]
fn ignore_eos_adds_a_logit_bias_stage() {
    let params =
        SamplingParams { seed: 1, ignore_eos: true, samplers: vec![SamplerKind::TopK], ..Default::default() };
    let Ok(mut chain) = SamplerChain::new(&params, &[2, 5]) else { panic!("chain") };
    assert_eq!(chain.describe(), "logits -> logit-bias -> top-k -> dist ");
    let all_on = SamplingParams {
        penalty_repeat: 1.1,
        top_n_sigma: 1.0,
        typ_p: 0.9,
        xtc_probability: 0.1,
        temp: 1.0,
        dynatemp_range: 0.2,
        ..Default::default()
    };
    let Ok(all_on) = SamplerChain::new(&all_on, &[]) else { panic!("chain") };
    assert_eq!(
        all_on.describe(),
        "logits -> penalties -> ?dry -> top-n-sigma -> top-k -> typical -> top-p -> min-p -> xtc -> temp-ext -> dist "
    );
    let logits = [0.1f32, 0.2, 9.0, 0.3, 0.4, 8.0];
    for _ in 0..20 {
        let t = chain.sample(&logits);
        assert!(matches!(t, Some(0 | 1 | 3 | 4)), "{t:?}");
    }
}

#[test]
fn bad_and_unsupported_settings_are_errors() {
    let bad = SamplingParams { penalty_repeat: 0.0, ..Default::default() };
    assert!(matches!(SamplerChain::new(&bad, &[]), Err(SampleError::Invalid(_))));
    let miro = SamplingParams { mirostat: 2, ..Default::default() };
    assert!(matches!(SamplerChain::new(&miro, &[]), Err(SampleError::Unsupported(_))));
    let dry = SamplingParams { dry_multiplier: 0.8, ..Default::default() };
    assert!(matches!(SamplerChain::new(&dry, &[]), Err(SampleError::Unsupported(_))));
}

#[test]
fn sampler_names_accept_llama_cpp_aliases() {
    for (name, kind) in [
        ("top_k", SamplerKind::TopK),
        ("TOP-K", SamplerKind::TopK),
        ("topk", SamplerKind::TopK),
        ("nucleus", SamplerKind::TopP),
        ("temp", SamplerKind::Temperature),
        ("typ", SamplerKind::TypicalP),
        ("typ-p", SamplerKind::TypicalP),
        ("min_p", SamplerKind::MinP),
        ("penalties", SamplerKind::Penalties),
        ("top-n-sigma", SamplerKind::TopNSigma),
    ] {
        assert_eq!(SamplerKind::from_name(name), Some(kind), "{name}");
    }
    assert_eq!(SamplerKind::from_name("bogus"), None);
    assert_eq!(SamplerKind::from_char('k'), Some(SamplerKind::TopK));
}

#[test]
fn gguf_sampling_defaults_apply_unless_the_flag_was_given() {
    use gguf::writer::GgufWriter;
    use gguf::{names, GgufFile, Value};
    let mut w = GgufWriter::new();
    w.set(names::KEY_ARCHITECTURE, Value::String("llama".into()))
        .set(names::KEY_SAMPLING_TOP_K, Value::I32(20))
        .set(names::KEY_SAMPLING_TOP_P, Value::F32(0.8))
        .set(names::KEY_SAMPLING_TEMP, Value::F32(0.6))
        .set(names::KEY_SAMPLING_PENALTY_LAST_N, Value::I32(32))
        .set(names::KEY_SAMPLING_SEQUENCE, Value::String("top_k;top-p;temperature".into()));
    let file = match GgufFile::from_bytes(w.to_bytes()) {
        Ok(f) => f,
        Err(e) => panic!("gguf: {e}"),
    };
    let mut params = SamplingParams { temp: 1.5, ..Default::default() };
    let user = UserSet { temp: true, ..Default::default() };
    assert!(params.apply_model_defaults(&file, &user).is_ok());
    assert_eq!((params.top_k, params.top_p, params.temp, params.penalty_last_n), (20, 0.8, 1.5, 32));
    assert_eq!(params.min_p, 0.05, "absent keys keep the default");
    assert_eq!(params.samplers, [SamplerKind::TopK, SamplerKind::TopP, SamplerKind::Temperature]);
}

#[test]
fn reset_restarts_the_draws_and_forgets_the_history() {
    // llama.cpp's reset re-seeds the final draw (and XTC) from the seed and clears the penalty
    // window: afterwards the chain draws exactly what a fresh chain with the same seed draws.
    let params = SamplingParams {
        seed: 1234,
        penalty_repeat: 1.3,
        xtc_probability: 0.5,
        xtc_threshold: 0.05,
        ..Default::default()
    };
    let rows: Vec<Vec<f32>> = (0..12).map(|i| random_logits(64, 100 + i)).collect();
    let draw = |chain: &mut SamplerChain| -> Vec<TokenId> {
        rows.iter()
            .map(|row| {
                let id = chain.sample(row).expect("a token");
                chain.accept(id);
                id
            })
            .collect()
    };
    let fresh = draw(&mut SamplerChain::new(&params, &[]).unwrap());
    let mut used = SamplerChain::new(&params, &[]).unwrap();
    let first = draw(&mut used);
    assert_eq!(first, fresh);
    used.reset();
    assert_eq!(used.seed(), 1234);
    assert_eq!(draw(&mut used), fresh);
    // Without the reset the same rows give another sequence (the stream and the penalties moved on).
    assert_ne!(draw(&mut used), fresh);
}
