//! The server's slot scheduler on SmolLM2-135M: one slot's greedy tokens are the command line's
//! (the same session arithmetic, token for token), and four requests at once, batched into one
//! forward per step, each get exactly what they get alone; stop strings, limits, a prompt that
//! does not fit, cancellation and the shared KV budget behave as llama-server's.

use std::sync::Arc;

use rs_llama::exec::Session;
use rs_llama::model::{LoadOptions, Logits, Model};
use rs_llama::sample::SamplingParams;
use rs_llama::server::api::{ErrorKind, Final, GenerateEvent, GenerateRequest, StopType};
use rs_llama::server::scheduler::{self, SchedulerConfig, SchedulerHandle};
use rs_llama::tokenizer::Tokenizer;

fn model_path() -> Option<String> {
    let home = std::env::var("HOME").ok()?;
    let cache = std::env::var("RS_LLAMA_CACHE").unwrap_or(format!("{home}/.cache/rs-llama"));
    Some(format!("{cache}/models/smollm2-135m-f16.gguf"))
}

fn load() -> Option<(Arc<Model>, Arc<Tokenizer>)> {
    let path = model_path()?;
    if !std::path::Path::new(&path).exists() {
        eprintln!("skipping: {path} is missing (run scripts/fetch-models.sh)");
        return None;
    }
    let model = Model::open(&path, &LoadOptions::default()).expect("model loads");
    let file = gguf::GgufFile::open(&path).expect("gguf");
    let tok = Tokenizer::from_gguf(&file).expect("tokenizer");
    Some((Arc::new(model), Arc::new(tok)))
}

fn config(n_slots: usize, n_ctx: usize) -> SchedulerConfig {
    SchedulerConfig::new(n_slots, n_ctx)
}

/// Reloads from the model's file (after a sleep).
fn reload() -> scheduler::Reload {
    Box::new(|| {
        let path = model_path().ok_or("no model path")?;
        Model::open(&path, &LoadOptions::default()).map(Arc::new).map_err(|e| e.to_string())
    })
}

fn start(m: &Arc<Model>, t: &Arc<Tokenizer>, n_slots: usize, n_ctx: usize) -> SchedulerHandle {
    let cfg = config(n_slots, n_ctx);
    scheduler::start(Arc::clone(m), Arc::clone(t), cfg, scheduler::cpu_session(), reload())
        .expect("scheduler")
}

fn greedy() -> SamplingParams {
    SamplingParams { temp: 0.0, seed: 42, ..SamplingParams::default() }
}

fn request(prompt: Vec<u32>, n_predict: i32) -> GenerateRequest {
    GenerateRequest {
        prompt,
        n_predict,
        sampling: greedy(),
        stop: Vec::new(),
        n_probs: 0,
        post_sampling_probs: false,
        cache_prompt: true,
        id_slot: None,
        stream: false,
        lora: Default::default(),
    }
}

fn wait(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<GenerateEvent>,
) -> Result<Final, rs_llama::server::api::ApiError> {
    loop {
        match rx.blocking_recv().expect("the scheduler answers") {
            GenerateEvent::Partial(_) => {}
            GenerateEvent::Final(f) => return Ok(*f),
            GenerateEvent::Error(e) => return Err(e),
        }
    }
}

/// The command line's greedy loop: the prompt in one decode, then one token at a time.
fn cli_greedy(m: &Model, t: &Tokenizer, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut s = Session::new(m, 512, 512).expect("session");
    let mut logits = s.decode(prompt, Logits::Last).expect("prompt");
    let mut out = Vec::new();
    for _ in 0..n {
        let id = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i as u32).unwrap();
        out.push(id);
        if t.is_eog(id) {
            break;
        }
        logits = s.decode(&[id], Logits::Last).expect("decode");
    }
    out
}

const PROMPTS: [&str; 4] = [
    "The capital of France is",
    "Once upon a time, in a small village,",
    "def fibonacci(n):",
    "The three primary colors are",
];

#[test]
fn one_slot_and_four_busy_slots_give_the_command_lines_tokens() {
    let Some((m, t)) = load() else { return };
    let prompts: Vec<Vec<u32>> = PROMPTS.iter().map(|p| t.encode(p, true, true)).collect();
    let want: Vec<Vec<u32>> = prompts.iter().map(|p| cli_greedy(&m, &t, p, 24)).collect();

    let one = start(&m, &t, 1, 512);
    for (p, w) in prompts.iter().zip(&want) {
        let got = wait(one.submit(request(p.clone(), 24))).expect("generation");
        assert_eq!(&got.tokens, w, "one slot: {:?}", t.detokenize(p, false, false));
        assert_eq!(got.content, String::from_utf8_lossy(&t.detokenize_bytes(w, false, false)));
        assert_eq!(got.tokens_evaluated, p.len());
    }
    one.shutdown();

    let four = start(&m, &t, 4, 2048);
    let rxs: Vec<_> = prompts.iter().map(|p| four.submit(request(p.clone(), 24))).collect();
    let got: Vec<Final> = rxs.into_iter().map(|rx| wait(rx).expect("generation")).collect();
    let slots: std::collections::BTreeSet<usize> = got.iter().map(|f| f.id_slot).collect();
    assert_eq!(slots.len(), 4, "four slots at once");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(&g.tokens, w, "batched with three other slots");
    }
    let m4 = four.metrics();
    assert!(m4.n_busy_slots_total as f64 / m4.n_decode_total as f64 > 2.0, "batched: {m4:?}");
    four.shutdown();
}

#[test]
fn stop_strings_limits_and_bad_prompts() {
    let Some((m, t)) = load() else { return };
    let s = start(&m, &t, 2, 256);
    let p = t.encode(PROMPTS[0], true, true);
    let free = wait(s.submit(request(p.clone(), 16))).expect("generation");
    assert_eq!(free.stop_type, StopType::Limit);
    assert_eq!(free.tokens_predicted, 16);
    // Stop at the second word of the free-running text.
    let word: String = free.content.split_whitespace().nth(1).expect("two words").to_string();
    let mut r = request(p.clone(), 16);
    r.stop = vec![word.clone()];
    let stopped = wait(s.submit(r)).expect("generation");
    assert_eq!(stopped.stop_type, StopType::Word);
    assert_eq!(stopped.stopping_word, word);
    let cut = free.content.find(&word).expect("the word is in the text");
    assert_eq!(stopped.content, free.content[..cut]);
    // The same prompt again: all but its last token come from the cache.
    assert_eq!(stopped.timings.cache_n, p.len() - 1);

    let long: Vec<u32> = (0..300).map(|i| 100 + i).collect();
    let e = wait(s.submit(request(long, 4))).expect_err("too long");
    assert_eq!(e.kind, ErrorKind::ExceedContextSize);
    assert_eq!(e.context, Some((300, 256)));

    // The context fills: the generation ends as truncated.
    let near: Vec<u32> = (0..250).map(|i| 200 + i).collect();
    let f = wait(s.submit(request(near, -1))).expect("generation");
    assert!(f.truncated && f.stop_type == StopType::Limit, "{:?} {}", f.stop_type, f.truncated);
    assert!(f.tokens_cached < 256);
    s.shutdown();
}

#[test]
fn streaming_partials_add_up_to_the_text_and_a_dropped_client_frees_its_slot() {
    let Some((m, t)) = load() else { return };
    let s = start(&m, &t, 1, 512);
    let p = t.encode(PROMPTS[1], true, true);
    let mut r = request(p.clone(), 20);
    r.stream = true;
    let mut rx = s.submit(r.clone());
    let mut text = String::new();
    let mut n = 0;
    let fin = loop {
        match rx.blocking_recv().expect("events") {
            GenerateEvent::Partial(x) => {
                text.push_str(&x.text);
                n += x.tokens.len();
            }
            GenerateEvent::Final(f) => break f,
            GenerateEvent::Error(e) => panic!("{e}"),
        }
    };
    text.push_str(&fin.unsent);
    assert_eq!(text, fin.content);
    assert_eq!(n, 20);

    // Drop the receiver after the first partial: the one slot must serve the next request.
    let mut rx = s.submit(r);
    assert!(matches!(rx.blocking_recv(), Some(GenerateEvent::Partial(_))));
    drop(rx);
    let next = wait(s.submit(request(p, 4))).expect("the slot was freed");
    assert_eq!(next.tokens_predicted, 4);
    s.shutdown();
    let after = wait(s.submit(request(vec![1, 2, 3], 4))).expect_err("shut down");
    assert_eq!(after.kind, ErrorKind::Unavailable);
}

/// `--sleep-idle-seconds`: once idle that long, the scheduler drops its session and model (the
/// test's handle is then the model's only owner) and says it sleeps; the next request loads the
/// model again and gets the same greedy tokens; the metrics carry over the sleep.
#[test]
fn an_idle_server_sleeps_and_the_next_request_wakes_it() {
    let Some((m, t)) = load() else { return };
    let prompt = t.encode(PROMPTS[0], true, true);
    let cfg = SchedulerConfig { sleep_idle: Some(std::time::Duration::from_millis(600)), ..config(1, 512) };
    let h = scheduler::start(Arc::clone(&m), Arc::clone(&t), cfg, scheduler::cpu_session(), reload())
        .expect("scheduler");
    let submitted = std::time::Instant::now();
    let first = wait(h.submit(request(prompt.clone(), 8))).expect("first");
    assert!(!h.is_sleeping());
    let start = std::time::Instant::now();
    while !h.is_sleeping() {
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "never went to sleep");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The idle time counts from the scheduler's last step, which came after the submission (and
    // before the answer reached this thread, which on a loaded machine can be much later).
    assert!(submitted.elapsed() >= std::time::Duration::from_millis(600), "slept too early");
    assert_eq!(Arc::strong_count(&m), 1, "the scheduler still holds the model while asleep");
    let predicted = first.tokens_predicted as u64;
    assert_eq!(h.metrics().tokens_predicted_total, predicted, "{:?}", h.metrics());
    let second = wait(h.submit(request(prompt, 8))).expect("second");
    assert!(!h.is_sleeping());
    assert_eq!(second.tokens, first.tokens);
    // The counters are published after the step that sent the answer.
    let start = std::time::Instant::now();
    while h.metrics().tokens_predicted_total < 2 * predicted && start.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(h.metrics().tokens_predicted_total, 2 * predicted, "the counters carry over the sleep");
    h.shutdown();
}

const LONG_PROMPT: &str =
    "Once upon a time in a land far away, there lived a brave knight who traveled across \
mountains and rivers to find the legendary golden sword hidden deep within the enchanted forest of whispers.";

fn start_with(m: &Arc<Model>, t: &Arc<Tokenizer>, cfg: SchedulerConfig) -> SchedulerHandle {
    scheduler::start(Arc::clone(m), Arc::clone(t), cfg, scheduler::cpu_session(), reload())
        .expect("scheduler")
}

/// `--cache-ram`: one slot, a long prompt, then another prompt that takes the slot over, then the
/// long prompt again. With the host-memory cache the slot starts from the saved rows (all but the
/// last token cached) and answers exactly as the slot's own prefix reuse did (the last prompt token
/// then runs alone, which may round differently from the first, batched read, so that is not the
/// reference); without it, the prompt is read again and answers as the first time.
#[test]
fn the_prompt_cache_gives_a_slot_back_a_prompt_another_task_replaced() {
    let Some((m, t)) = load() else { return };
    let long = t.encode(LONG_PROMPT, true, true);
    let fox = t.encode("The quick brown fox", true, true);
    for ram_mib in [100, 0] {
        let s = start_with(&m, &t, SchedulerConfig { cache_ram_mib: ram_mib, ..config(1, 512) });
        let first = wait(s.submit(request(long.clone(), 8))).expect("first");
        assert_eq!(first.timings.prompt_n, long.len());
        let reused = wait(s.submit(request(long.clone(), 8))).expect("reused");
        assert_eq!(reused.timings.cache_n, long.len() - 1, "the slot's own prefix");
        wait(s.submit(request(fox.clone(), 4))).expect("fox");
        let held = s.slots()[0].n_cached;
        assert!(held >= fox.len() && held < long.len(), "the slot holds the fox prompt now: {held}");
        let again = wait(s.submit(request(long.clone(), 8))).expect("again");
        if ram_mib > 0 {
            assert_eq!(again.tokens, reused.tokens, "cache-ram {ram_mib}: the prefix reuse's answer");
            assert_eq!(again.timings.cache_n, long.len() - 1, "restored from host memory");
            assert_eq!(again.timings.prompt_n, 1);
        } else {
            assert_eq!(again.tokens, first.tokens, "no cache-ram: the first answer");
            // Only what the two prompts share (nothing, or a BOS).
            let shared = long.iter().zip(&fox).take_while(|(a, b)| a == b).count();
            assert_eq!(again.timings.cache_n, shared);
        }
        s.shutdown();
    }
}

/// `--cache-idle-slots` with one shared pool (llama-server's test_clear_and_restore): starting a
/// task on slot 1 saves idle slot 0 to the prompt cache and empties it; the long prompt sent again
/// (to any slot) comes back from the cache. With `--no-cache-idle-slots` slot 0 keeps its rows.
#[test]
fn idle_slots_are_saved_and_emptied_when_a_task_starts() {
    let Some((m, t)) = load() else { return };
    let long = t.encode(LONG_PROMPT, true, true);
    let fox = t.encode("The quick brown fox", true, true);
    for idle in [true, false] {
        let cfg = SchedulerConfig { cache_ram_mib: 100, cache_idle_slots: idle, ..config(2, 1024) };
        let s = start_with(&m, &t, cfg);
        let on = |p: &[u32], slot: usize| GenerateRequest { id_slot: Some(slot), ..request(p.to_vec(), 4) };
        let first = wait(s.submit(on(&long, 0))).expect("long on slot 0");
        assert_eq!(first.id_slot, 0);
        wait(s.submit(on(&fox, 1))).expect("fox on slot 1");
        let held = s.slots()[0].n_cached;
        if idle {
            assert_eq!(held, 0, "slot 0 was saved and emptied");
        } else {
            assert!(held >= long.len(), "slot 0 keeps its prompt: {held}");
        }
        let again = wait(s.submit(request(long.clone(), 4))).expect("long again");
        assert_eq!(again.tokens, first.tokens);
        assert_eq!(again.timings.cache_n, long.len() - 1, "idle-slots {idle}");
        s.shutdown();
    }
}
