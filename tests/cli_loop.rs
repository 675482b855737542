//! llama-completion's loop rules on a fake model whose next token is known: what is echoed, when it
//! stops, how decodes are counted (prompt eval vs eval runs), what the sampler accepts.

use rs_llama::cli::completion::{generate, warm_up, LoopParts, LoopSettings, StopReason};
use rs_llama::cli::engine::{Engine, Vocab};
use rs_llama::cli::perf::ContextPerf;
use rs_llama::model::ModelError;
use rs_llama::sample::{SamplerChain, SamplingParams};
use rs_llama::TokenId;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

const LETTERS: usize = 6; // tokens 0..6 are "a".."f"
const EOS: TokenId = 6;
const BOS: TokenId = 7;

/// Next token after `t` is `t + 1` (after "f" comes EOS when `eos_after_f`, else "a").
struct FakeModel {
    n_ctx: usize,
    eos_after_f: bool,
    decodes: Vec<Vec<TokenId>>,
    cleared: usize,
}

impl Engine for FakeModel {
    fn n_vocab(&self) -> usize {
        8
    }

    fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    fn decode(&mut self, tokens: &[TokenId]) -> Result<Vec<f32>, ModelError> {
        self.decodes.push(tokens.to_vec());
        let last = *tokens.last().ok_or_else(|| ModelError::Invalid("empty batch".into()))?;
        let next = match last {
            5 if self.eos_after_f => EOS,
            t if (t as usize) < LETTERS => (t + 1) % LETTERS as TokenId,
            _ => 0,
        };
        // A clear winner, the rest spread so that non-greedy chains still have choices.
        Ok((0..8).map(|i| if i == next { 12.0 } else { 0.25 * i as f32 - 1.0 }).collect())
    }

    fn clear(&mut self) {
        self.cleared += 1;
    }
}

struct FakeVocab;

impl Vocab for FakeVocab {
    fn encode(&self, text: &str, add_special: bool, _parse_special: bool) -> Vec<TokenId> {
        let mut out = if add_special { vec![BOS] } else { vec![] };
        out.extend(text.bytes().filter(|b| (b'a'..=b'f').contains(b)).map(|b| (b - b'a') as TokenId));
        out
    }

    fn piece(&self, id: TokenId, special: bool) -> Vec<u8> {
        match id {
            EOS if special => b"</s>".to_vec(),
            BOS if special => b"<s>".to_vec(),
            t if (t as usize) < LETTERS => vec![b'a' + t as u8],
            _ => vec![],
        }
    }

    fn is_eog(&self, id: TokenId) -> bool {
        id == EOS
    }

    fn eog_tokens(&self) -> Vec<TokenId> {
        vec![EOS]
    }

    fn bos(&self) -> Option<TokenId> {
        Some(BOS)
    }

    fn eos(&self) -> Option<TokenId> {
        Some(EOS)
    }

    fn add_bos(&self) -> bool {
        true
    }
}

struct Outcome {
    reason: StopReason,
    text: String,
    model: FakeModel,
    perf: ContextPerf,
    accepted: usize,
}

fn run(
    prompt: &str,
    settings: LoopSettings,
    model: FakeModel,
    params: SamplingParams,
    interrupted: bool,
) -> Outcome {
    let mut model = model;
    let vocab = FakeVocab;
    let Ok(mut chain) = SamplerChain::new(&params, &vocab.eog_tokens()) else { panic!("chain") };
    let mut perf = ContextPerf::new(Instant::now());
    let flag = AtomicBool::new(interrupted);
    let mut bytes = Vec::new();
    let mut sink = |b: &[u8]| bytes.extend_from_slice(b);
    let tokens = vocab.encode(prompt, true, true);
    let parts = LoopParts {
        engine: &mut model,
        vocab: &vocab,
        chain: &mut chain,
        perf: &mut perf,
        interrupted: &flag,
        text: &mut sink,
    };
    let reason = generate(&settings, &tokens, parts).unwrap_or(StopReason::Interrupted);
    let accepted = chain.perf().n_accept;
    Outcome { reason, text: String::from_utf8_lossy(&bytes).into_owned(), model, perf, accepted }
}

fn settings(n_predict: i32) -> LoopSettings {
    LoopSettings { n_predict, n_batch: 2048, display_prompt: true, special: false, reverse_prompts: vec![] }
}

fn model(n_ctx: usize, eos_after_f: bool) -> FakeModel {
    FakeModel { n_ctx, eos_after_f, decodes: vec![], cleared: 0 }
}

fn greedy() -> SamplingParams {
    SamplingParams { seed: 1, temp: 0.0, ..Default::default() }
}

#[test]
fn n_predict_tokens_and_n_minus_1_eval_runs() {
    let o = run("ab", settings(5), model(64, false), greedy(), false);
    assert_eq!(o.reason, StopReason::Budget);
    assert_eq!(o.text, "abcdefa");
    // Prompt decoded once (3 tokens with BOS), then one decode per sampled token but the last.
    assert_eq!(o.model.decodes, vec![vec![BOS, 0, 1], vec![2], vec![3], vec![4], vec![5]]);
    assert_eq!((o.perf.n_prompt_eval, o.perf.n_eval), (3, 4));
    assert_eq!(o.accepted, 3 + 5, "prompt tokens are accepted too");
}

#[test]
fn end_of_generation_prints_end_of_text() {
    let o = run("d", settings(-1), model(64, true), greedy(), false);
    assert_eq!(o.reason, StopReason::EndOfGeneration);
    assert_eq!(o.text, "def [end of text]\n");
}

#[test]
fn special_shows_control_tokens() {
    let s = LoopSettings { special: true, ..settings(-1) };
    let o = run("e", s, model(64, true), greedy(), false);
    assert_eq!(o.text, "<s>ef</s> [end of text]\n");
}

#[test]
fn context_full_stops_before_overflowing() {
    // n_ctx 6: prompt of 3, then decodes while n_past + 1 < 6.
    let o = run("ab", settings(-1), model(6, false), greedy(), false);
    assert_eq!(o.reason, StopReason::ContextFull);
    assert_eq!(o.text, "abcde");
    assert_eq!(o.model.decodes.len(), 3);
}

#[test]
fn prompt_is_fed_in_n_batch_pieces() {
    let s = LoopSettings { n_batch: 2, ..settings(2) };
    let o = run("abcd", s, model(64, false), greedy(), false);
    assert_eq!(o.model.decodes, vec![vec![BOS, 0], vec![1, 2], vec![3], vec![4]]);
    // A one-token decode is an eval run even when it is prompt, as in libllama.
    assert_eq!((o.perf.n_prompt_eval, o.perf.n_eval), (4, 2));
    assert_eq!(o.text, "abcdef");
}

#[test]
fn no_display_prompt_hides_only_the_prompt() {
    let s = LoopSettings { display_prompt: false, ..settings(3) };
    assert_eq!(run("ab", s, model(64, false), greedy(), false).text, "cde");
}

#[test]
fn reverse_prompt_stops_generation() {
    let s = LoopSettings { reverse_prompts: vec!["de".into()], ..settings(-1) };
    let o = run("a", s, model(64, false), greedy(), false);
    assert_eq!(o.reason, StopReason::ReversePrompt);
    assert_eq!(o.text, "abcde");
}

#[test]
fn zero_predict_does_nothing_and_interrupt_stops_at_once() {
    let o = run("ab", settings(0), model(64, false), greedy(), false);
    assert_eq!((o.reason, o.text.as_str(), o.model.decodes.len()), (StopReason::Budget, "", 0));
    let o = run("ab", settings(10), model(64, false), greedy(), true);
    assert_eq!((o.reason, o.model.decodes.len()), (StopReason::Interrupted, 0));
}

#[test]
fn ignore_eos_never_picks_eos() {
    let params = SamplingParams { ignore_eos: true, ..greedy() };
    let o = run("e", settings(8), model(64, true), params, false);
    assert_eq!(o.reason, StopReason::Budget);
    // With EOS at -inf the best after "f" is BOS (0.75, prints nothing), then "a" again.
    assert_eq!(o.text, "efabcdef");
}

#[test]
fn warm_up_decodes_bos_eos_then_clears_and_sets_load_time() {
    let mut m = model(64, false);
    let mut perf = ContextPerf::new(Instant::now());
    assert!(warm_up(&mut m, &FakeVocab, 2048, &mut perf).is_ok());
    assert_eq!(m.decodes, vec![vec![BOS, EOS]]);
    assert_eq!(m.cleared, 1);
    assert!(perf.load.is_some());
    assert_eq!(perf.n_prompt_eval, 2);
}

#[test]
fn prompt_rules_too_long_and_empty() {
    use rs_llama::cli::run::{prompt_tokens, RunError};
    use rs_llama::cli::RunConfig;
    let cfg = RunConfig { prompt: "abcdef".into(), ..Default::default() };
    // BOS + 6 letters = 7 tokens; the limit is n_ctx - 4.
    assert!(matches!(prompt_tokens(&cfg, &FakeVocab, 11), Ok(t) if t.len() == 7));
    let err = prompt_tokens(&cfg, &FakeVocab, 10).err();
    assert_eq!(
        err.as_ref().map(|e| e.to_string()).as_deref(),
        Some("llama_completion: prompt is too long (7 tokens, max 6)")
    );
    assert_eq!(err.map(|e| e.exit_code()), Some(1));

    /// A vocabulary without automatic BOS, where an empty prompt has no tokens at all.
    struct NoBos;
    impl Vocab for NoBos {
        fn encode(&self, text: &str, _: bool, p: bool) -> Vec<TokenId> {
            FakeVocab.encode(text, false, p)
        }
        fn piece(&self, id: TokenId, special: bool) -> Vec<u8> {
            FakeVocab.piece(id, special)
        }
        fn is_eog(&self, id: TokenId) -> bool {
            id == EOS
        }
        fn eog_tokens(&self) -> Vec<TokenId> {
            vec![EOS]
        }
        fn bos(&self) -> Option<TokenId> {
            Some(BOS)
        }
        fn eos(&self) -> Option<TokenId> {
            Some(EOS)
        }
        fn add_bos(&self) -> bool {
            false
        }
    }
    let empty = RunConfig::default();
    let err = prompt_tokens(&empty, &NoBos, 64).err();
    assert!(matches!(err, Some(RunError::EmptyInput)));
    assert_eq!(err.map(|e| e.exit_code()), Some(255), "llama-completion returns -1");
}
