//! rs-llama's GBNF parser and matcher against llama.cpp's own grammar code, run over the cases in
//! tests/fixtures/grammar/*_cases.json by the oracle program there (see its README): the rules a
//! text compiles to (ids, names, elements) or which check refuses it; which byte chunks a grammar
//! takes one after another (chunks may cut UTF-8 sequences); and, with SmolLM2's vocabulary, the
//! exact set of tokens allowed before and after each token of a walk.

use rs_llama::sample::grammar::{Element, Grammar, GrammarError, GrammarSampler, GrammarState, GrammarVocab};
use rs_llama::sample::stages::Candidates;
use rs_llama::tokenizer::Tokenizer;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/grammar/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A rule in the oracle's notation: `name ::= kind:value ...`.
fn rule_line(g: &Grammar, id: usize) -> String {
    let mut line = format!("{} ::=", g.name(id as u32));
    for e in &g.rules()[id] {
        line += &match *e {
            Element::End => " end".to_string(),
            Element::Alt => " alt".to_string(),
            Element::RuleRef(r) => format!(" ref:{r}"),
            Element::Char(c) => format!(" char:{c}"),
            Element::CharNot(c) => format!(" char_not:{c}"),
            Element::CharRangeUpper(c) => format!(" upper:{c}"),
            Element::CharAlt(c) => format!(" char_alt:{c}"),
            Element::CharAny => " any".to_string(),
            Element::Token(t) => format!(" token:{t}"),
            Element::TokenNot(t) => format!(" token_not:{t}"),
        };
    }
    line
}

/// The oracle's name for the check that refused a grammar.
fn refusal(e: &GrammarError) -> &'static str {
    match e {
        GrammarError::MissingRoot => "root",
        GrammarError::LeftRecursion(_) => "left_recursion",
        _ => "parse",
    }
}

#[test]
fn rules_and_refusals_match_llama_cpp() {
    let cases = fixture("parse_expected.json");
    let cases = cases.as_array().expect("an array");
    assert!(cases.len() >= 50, "{} cases", cases.len());
    for case in cases {
        let text = case["grammar"].as_str().expect("grammar");
        match (Grammar::parse(text.as_bytes(), None), case.get("error")) {
            (Ok(g), None) => {
                let want: Vec<&str> =
                    case["rules"].as_array().expect("rules").iter().filter_map(Value::as_str).collect();
                let got: Vec<String> = (0..g.rules().len()).map(|i| rule_line(&g, i)).collect();
                assert_eq!(got, want, "{text:?}");
            }
            (Err(e), Some(kind)) => assert_eq!(refusal(&e), kind, "{text:?}: {e}"),
            (Ok(_), Some(kind)) => panic!("{text:?}: llama.cpp refuses it ({kind}), rs-llama does not"),
            (Err(e), None) => panic!("{text:?}: llama.cpp takes it, rs-llama says {e}"),
        }
    }
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex")).collect()
}

#[test]
fn byte_chunks_are_taken_as_llama_cpp_takes_them() {
    let cases = fixture("match_expected.json");
    let mut n = 0;
    for case in cases.as_array().expect("an array") {
        let text = case["grammar"].as_str().expect("grammar");
        let grammar = Arc::new(Grammar::parse(text.as_bytes(), None).expect(text));
        for result in case["results"].as_array().expect("results") {
            let chunks: Vec<Vec<u8>> = result["chunks"]
                .as_array()
                .expect("chunks")
                .iter()
                .map(|c| unhex(c.as_str().expect("hex")))
                .collect();
            let mut state = GrammarState::new(Arc::clone(&grammar));
            let accepted = chunks.iter().take_while(|c| state.accept_text(c).is_ok()).count();
            let complete = accepted == chunks.len() && state.can_end();
            assert_eq!(
                accepted as u64,
                result["accepted"].as_u64().expect("accepted"),
                "{text:?} {chunks:x?}"
            );
            assert_eq!(complete, result["complete"].as_bool().expect("complete"), "{text:?} {chunks:x?}");
            n += 1;
        }
    }
    assert!(n >= 50, "{n} inputs");
}

// llama.cpp made the expected outputs from its own f16 conversion of the same Q4_1 file
// (`smollm2-135m-f16.llamacpp.gguf`, llama-quantize); ours holds the same values and vocabulary
// and is the one CI has, so these tests run there.
fn smollm2() -> Option<(PathBuf, Tokenizer)> {
    let home = std::env::var("HOME").unwrap_or_default();
    let cache = std::env::var("RS_LLAMA_CACHE").unwrap_or(format!("{home}/.cache/rs-llama"));
    let path = PathBuf::from(cache).join("models/smollm2-135m-f16.gguf");
    if !path.exists() {
        eprintln!("skipped: {} is not there (made by scripts/fetch-models.sh)", path.display());
        return None;
    }
    let file = gguf::GgufFile::open(&path).expect("gguf");
    Some((path, Tokenizer::from_gguf(&file).expect("tokenizer")))
}

/// The oracle's form of an id set: the ids, or for a large set its size and FNV-1a.
fn id_set(ids: &[u32]) -> Value {
    if ids.len() <= 3000 {
        return serde_json::json!(ids);
    }
    let mut h: u64 = 0xcbf29ce484222325;
    for id in ids {
        for b in id.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    serde_json::json!({ "count": ids.len(), "fnv": h })
}

fn allowed(sampler: &GrammarSampler, n_vocab: usize) -> Vec<u32> {
    let mut cur = Candidates::from_logits(&vec![0.0; n_vocab]);
    sampler.apply(&mut cur);
    let mask: Vec<u32> = cur.data.iter().filter(|c| c.logit.is_finite()).map(|c| c.id).collect();
    // The one-token check agrees with the mask.
    for id in [0, 1, 2, 17, 28, 65, 81, 378, 2949, 6150, 10407] {
        assert_eq!(sampler.allows(id), mask.contains(&id), "token {id}");
    }
    mask
}

#[test]
fn allowed_tokens_match_llama_cpp_on_smollm2() {
    let Some((_, tok)) = smollm2() else { return };
    let vocab = Arc::new(GrammarVocab::from_tokenizer(&tok));
    let n_vocab = tok.n_vocab();
    let tokenize = |text: &[u8]| tok.encode_bytes(text, false, true);
    for case in fixture("mask_expected.json").as_array().expect("an array") {
        let text = case["grammar"].as_str().expect("grammar");
        let parsed = GrammarSampler::from_text(text, Arc::clone(&vocab), &tokenize);
        let Some(kind) = case.get("error") else {
            let mut sampler = parsed.expect(text).expect("not empty");
            let steps = case["allowed"].as_array().expect("allowed");
            let walk: Vec<u32> = case["accept"]
                .as_array()
                .expect("accept")
                .iter()
                .map(|v| v.as_u64().expect("id") as u32)
                .collect();
            let failed = case.get("accept_failed").and_then(Value::as_u64).map(|id| id as u32);
            for (step, want) in steps.iter().enumerate() {
                assert_eq!(&id_set(&allowed(&sampler, n_vocab)), want, "{text:?} after {:?}", &walk[..step]);
                if let Some(&id) = walk.get(step) {
                    let result = sampler.accept(id);
                    assert_eq!(result.is_err(), failed == Some(id), "{text:?}: token {id}: {result:?}");
                }
            }
            continue;
        };
        let e = parsed.err().unwrap_or_else(|| panic!("{text:?}: llama.cpp refuses it ({kind})"));
        assert_eq!(refusal(&e), kind.as_str().expect("kind"), "{text:?}");
    }
}
