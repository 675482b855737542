//! Hand-checked cases for the parser, the matcher and the sampler stage. The comparison with
//! llama.cpp's own grammar code over many more cases is tests/grammar_oracle.rs.

use super::*;
use crate::sample::{SamplerChain, SamplingParams};
use Element::*;

fn parse(text: &str) -> Grammar {
    Grammar::parse(text.as_bytes(), None).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn error(text: &str) -> String {
    match Grammar::parse(text.as_bytes(), None) {
        Ok(_) => panic!("{text:?} parsed"),
        Err(e) => e.to_string(),
    }
}

/// Whether the grammar takes all of `text` and may end there.
fn matches(g: &Arc<Grammar>, text: &str) -> bool {
    let mut s = GrammarState::new(Arc::clone(g));
    s.accept_text(text.as_bytes()).is_ok() && s.can_end()
}

/// Whether the grammar takes `text` as a prefix (it may go on).
fn takes(g: &Arc<Grammar>, text: &[u8]) -> bool {
    GrammarState::new(Arc::clone(g)).accept_text(text).is_ok()
}

#[test]
fn rules_alternates_and_groups_compile_to_llama_cpp_elements() {
    let g = parse(
        r#"root ::= "ab" | x ("c" | "d")
x ::= "x""#,
    );
    assert_eq!(g.rules()[0], [Char(97), Char(98), Alt, RuleRef(1), RuleRef(2), End]);
    assert_eq!(g.rules()[1], [Char(120), End]);
    assert_eq!(g.rules()[2], [Char(99), Alt, Char(100), End]);
    assert_eq!((g.name(0), g.name(1), g.name(2)), ("root", "x", "root_2"));
}

#[test]
fn repetitions_become_helper_rules() {
    let g = parse(r#"root ::= "a"* "b"+ "c"? "d"{2,3} "e"{2,}"#);
    let r = g.rules();
    assert_eq!(
        r[0],
        [
            RuleRef(1),
            Char(98),
            RuleRef(2),
            RuleRef(3),
            Char(100),
            Char(100),
            RuleRef(4),
            Char(101),
            Char(101),
            RuleRef(5),
            End
        ]
    );
    assert_eq!(r[1], [Char(97), RuleRef(1), Alt, End], "a*: S' ::= S S' |");
    assert_eq!(r[2], [Char(98), RuleRef(2), Alt, End], "b+: S S'");
    assert_eq!(r[3], [Char(99), Alt, End], "c?: S' ::= S |");
    assert_eq!(r[4], [Char(100), Alt, End], "d{{2,3}}: one optional more");
    assert_eq!(r[5], [Char(101), RuleRef(5), Alt, End], "e{{2,}}: then any number");
    let g = Arc::new(parse(r#"root ::= [0-9]{2,4}"#));
    assert!(!matches(&g, "1") && matches(&g, "12") && matches(&g, "1234") && !matches(&g, "12345"));
    let g = Arc::new(parse(r#"root ::= "x"{0} "y"{3}"#));
    assert!(matches(&g, "yyy") && !matches(&g, "xyyy") && !matches(&g, "yy"));
}

#[test]
fn character_classes_ranges_negation_and_any() {
    let g = parse(r#"root ::= [a-cx] [^0-9\n] ."#);
    assert_eq!(
        g.rules()[0],
        [
            Char(97),
            CharRangeUpper(99),
            CharAlt(120),
            CharNot(48),
            CharRangeUpper(57),
            CharAlt(10),
            CharAny,
            End
        ]
    );
    let g = Arc::new(g);
    assert!(
        matches(&g, "bq!")
            && matches(&g, "xé日")
            && !matches(&g, "d!!")
            && !matches(&g, "a5!")
            && !matches(&g, "a\n!")
    );
    // A '-' first or last in a class is itself; an empty class matches nothing at all (nothing
    // is pushed), as in llama.cpp.
    let g = Arc::new(parse(r#"root ::= [-a] [a-] "z" [] "z""#));
    assert!(matches(&g, "--zz") && matches(&g, "aazz"));
}

#[test]
fn escapes_and_utf8_literals() {
    let g = parse(r#"root ::= "\x41\u00e9\U0001F600\n\t\r\\\"\[\]\-" "é日""#);
    let want: Vec<Element> = [0x41, 0xe9, 0x1F600, 10, 9, 13, 92, 34, 91, 93, 45, 0xe9, 0x65e5]
        .into_iter()
        .map(Char)
        .chain([End])
        .collect();
    assert_eq!(g.rules()[0], want);
    assert!(error(r#"root ::= "\q""#).starts_with("unknown escape at line 1, column 11"));
    assert!(error(r#"root ::= "\x4""#).starts_with("expecting 2 hex digits at line 1, column 11"));
}

#[test]
fn comments_and_multi_line_rules() {
    let text = "# a list\nroot ::= item+ # items\n\nitem ::= (\n  \"a\" |  # first\n  \"b\"\n) \"\\n\"\r\nend ::= \"e\" |\n  \"f\"\n";
    let g = Arc::new(parse(text));
    assert!(matches(&g, "a\nb\n") && !matches(&g, "ab"));
    assert_eq!(
        (g.name(4), &g.rules()[4][..]),
        ("end", &[Char(101), Alt, Char(102), End][..]),
        "a line continues after '|'"
    );
    assert!(error("root ::= \"a\"\n  | \"b\"").starts_with("expecting a rule name at line 2, column 3"));
}

#[test]
fn token_references() {
    let g = parse("root ::= <[12]> !<[7]>");
    assert_eq!(g.rules()[0], [Token(12), TokenNot(7), End]);
    let tokenize = |text: &[u8]| if text == b"<think>" { vec![42] } else { vec![1, 2] };
    let g = Grammar::parse(b"root ::= <think> !<think>", Some(&tokenize)).expect("parses");
    assert_eq!(g.rules()[0], [Token(42), TokenNot(42), End]);
    let e = Grammar::parse(b"root ::= <ab>", Some(&tokenize)).err().map(|e| e.to_string());
    assert_eq!(
        e.as_deref(),
        Some("invalid token <ab>: it is not exactly one token at line 1, column 10: \"<ab>\"")
    );
    assert!(error("root ::= <think>").starts_with("token <think> needs a vocabulary"));
    assert!(error("root ::= <[99999999999]>").starts_with("token id too large"));
}

#[test]
fn refusals_say_what_and_where() {
    assert_eq!(error(r#"root ::= "a"#), "unterminated string literal at line 1, column 10: \"\\\"a\"");
    assert_eq!(error("root ::= foo"), "undefined rule 'foo'");
    assert_eq!(error("root ::= a b\nb ::= \"x\""), "undefined rule 'a'");
    assert_eq!(error(r#"rot ::= "a""#), "the grammar has no 'root' rule");
    assert_eq!(error("  # nothing\n"), "the grammar defines no rules");
    assert_eq!(error("root := \"a\""), "expecting ::= at line 1, column 6: \":= \\\"a\\\"\"");
    assert_eq!(
        error("root ::= (\"a\""),
        "expecting ')' to close the group at line 1, column 10 at line 1, column 14 (end of input)"
    );
    assert_eq!(error("root ::= \"a\" )"), "expecting newline or end at line 1, column 14: \")\"");
    assert_eq!(
        error("root ::= *"),
        "expecting an item before the repetition operator at line 1, column 10: \"*\""
    );
    assert!(error("root ::= \"a\"{3,2}").starts_with("repetition {3,2} has its maximum below its minimum"));
    assert!(error("root ::= \"a\"{2001}").starts_with("repetition count 2001 is above the limit of 2000"));
    assert!(error("root ::= (\"a\"{2,50}){50}").starts_with("nested repetitions make more than 2000 rules"));
    assert!(error("root ::= [a-").starts_with("unterminated character class at line 1, column 10"));
}

#[test]
fn left_recursion_is_refused_even_through_an_empty_rule() {
    assert_eq!(
        error("root ::= root \"a\" | \"b\""),
        "left recursion in rule 'root' (llama.cpp refuses left-recursive grammars too)"
    );
    assert!(error("root ::= a\na ::= b \"x\"\nb ::= \"\" | a").starts_with("left recursion in rule 'a'"));
    // Recursion after a character is fine.
    let g = Arc::new(parse("root ::= \"(\" root? \")\""));
    assert!(matches(&g, "(())") && !matches(&g, "(()"));
}

#[test]
fn a_nul_byte_ends_the_text_as_in_llama_cpp() {
    let g = Grammar::parse(b"root ::= \"a\"\0 garbage", None).expect("parses");
    assert_eq!(g.rules()[0], [Char(97), End]);
}

#[test]
fn utf8_decoding_keeps_the_open_sequence() {
    let mut out = Vec::new();
    let p = decode_utf8("aé".as_bytes(), PartialUtf8::default(), &mut out);
    assert_eq!((out.as_slice(), p), (&[97, 0xe9][..], PartialUtf8 { value: 0xe9, n_remain: 0 }));
    // 日 = e6 97 a5, cut after two bytes, then finished.
    out.clear();
    let p = decode_utf8(&[b'x', 0xe6, 0x97], PartialUtf8::default(), &mut out);
    assert_eq!((out.as_slice(), p), (&[120][..], PartialUtf8 { value: 0x6 << 6 | 0x17, n_remain: 1 }));
    out.clear();
    let p = decode_utf8(&[0xa5, b'!'], p, &mut out);
    assert_eq!((out.as_slice(), p.n_remain), (&[0x65e5, 33][..], 0));
    // A stray continuation byte drops the piece; a bad continuation of an open sequence too.
    out.clear();
    assert_eq!(decode_utf8(&[b'a', 0x80], PartialUtf8::default(), &mut out).n_remain, -1);
    assert!(out.is_empty());
    assert_eq!(decode_utf8(b"A", PartialUtf8 { value: 6, n_remain: 2 }, &mut out).n_remain, -1);
}

#[test]
fn the_matcher_follows_text_split_inside_characters() {
    let g = Arc::new(parse("root ::= [α-ω]+ \"!\""));
    let mut s = GrammarState::new(Arc::clone(&g));
    for chunk in [&[0xce][..], &[0xb1, 0xcf], &[0x89], b"!"] {
        assert!(s.accept_text(chunk).is_ok(), "{chunk:x?}");
    }
    assert!(s.can_end());
    assert!(!takes(&g, "αΩ".as_bytes()));
    assert!(takes(&g, &[0xce]), "a lead byte that can still become α-ω");
}

fn tiny_vocab(pieces: &[&[u8]], eog: &[TokenId]) -> Arc<GrammarVocab> {
    let owned: Vec<Vec<u8>> = pieces.iter().map(|p| p.to_vec()).collect();
    Arc::new(GrammarVocab::new(owned.len(), |id| owned[id as usize].clone(), |id| eog.contains(&id)))
}

fn sampler(text: &str, vocab: &Arc<GrammarVocab>) -> GrammarSampler {
    GrammarSampler::new(Arc::new(parse(text)), Arc::clone(vocab))
}

fn allowed(s: &GrammarSampler, n: usize) -> Vec<TokenId> {
    let mut cur = Candidates::from_logits(&vec![0.0; n]);
    s.apply(&mut cur);
    let ids: Vec<TokenId> = cur.data.iter().filter(|c| c.logit.is_finite()).map(|c| c.id).collect();
    for id in 0..n as TokenId {
        assert_eq!(s.allows(id), ids.contains(&id), "allows({id}) and the mask disagree");
    }
    ids
}

#[test]
fn the_mask_keeps_what_can_continue_and_eog_only_at_the_end() {
    // 0 "y", 1 "yes", 2 "ye", 3 "ny", 4 "no", 5 EOG, 6 "", 7 "s.", 8 é's first byte, 9 é's second
    let pieces: [&[u8]; 10] = [b"y", b"yes", b"ye", b"ny", b"no", b"</s>", b"", b"s.", &[0xc3], &[0xa9]];
    let v = tiny_vocab(&pieces, &[5]);
    let mut s = sampler(r#"root ::= ("yes" | "no" | "é") "."?"#, &v);
    assert_eq!(allowed(&s, 10), [0, 1, 2, 4, 8]);
    s.accept(2).expect("ye");
    assert_eq!(allowed(&s, 10), [7]);
    s.accept(7).expect("s.");
    assert_eq!(allowed(&s, 10), [5], "complete: only the end");
    s.accept(5).expect("the end is taken once complete");

    let mut s = sampler(r#"root ::= "é" "!""#, &v);
    s.accept(8).expect("half of é");
    assert_eq!(s.state().partial().n_remain, 1);
    assert_eq!(allowed(&s, 10), [9], "only the byte that finishes é");
    // As llama.cpp: a piece that breaks the open sequence decodes to nothing and is taken
    // without moving the grammar; the next pieces decode afresh.
    s.accept(4).expect("taken, as llama.cpp takes it");
    assert_eq!(s.state().partial().n_remain, -1);
    assert_eq!(allowed(&s, 10), [8]);
    assert_eq!(s.accept(5), Err(AcceptError::EndTooEarly(5)));
    assert!(matches!(s.accept(0), Err(AcceptError::Rejected { id: 0, .. })));
}

#[test]
fn the_chain_resamples_only_when_the_free_pick_is_refused() {
    let pieces: [&[u8]; 4] = [b"a", b"b", b"c", b"</s>"];
    let v = tiny_vocab(&pieces, &[3]);
    let params = SamplingParams { seed: 42, temp: 0.0, ..Default::default() };
    let logits = [1.0, 3.0, 2.0, 0.5];

    let mut free = SamplerChain::new(&params, &[3]).expect("chain");
    assert_eq!(free.sample(&logits), Some(1));
    let mut fits =
        SamplerChain::new(&params, &[3]).expect("chain").with_grammar(Some(sampler("root ::= [bc]", &v)));
    assert_eq!(fits.sample(&logits), Some(1), "the free pick fits");
    let mut refused =
        SamplerChain::new(&params, &[3]).expect("chain").with_grammar(Some(sampler("root ::= [ac]+", &v)));
    let mut cur = Candidates::default();
    assert_eq!(refused.sample_into(&logits, &mut cur), Some(2), "best of what the grammar allows");
    assert!(cur.data.iter().all(|c| c.id != 1 || c.logit == f32::NEG_INFINITY), "the mask was applied");
    refused.accept_generated(2).expect("c");
    assert_eq!(refused.sample(&logits), Some(2));

    // Complete with the end banned: nothing to sample.
    let banned = SamplingParams { ignore_eos: true, ..params };
    let mut done =
        SamplerChain::new(&banned, &[3]).expect("chain").with_grammar(Some(sampler("root ::= \"b\"", &v)));
    assert_eq!(done.sample(&logits), Some(1));
    done.accept_generated(1).expect("b");
    assert_eq!(done.sample(&logits), None);
}

#[test]
fn rejection_draws_the_random_stream_twice_as_llama_cpp() {
    // The free pick ('a', near certain) is refused, so the chain runs again on the masked
    // logits: a second draw. A plain chain fed the same two rows draws the same tokens, then
    // the same third one.
    let pieces: [&[u8]; 3] = [b"a", b"b", b"c"];
    let v = tiny_vocab(&pieces, &[]);
    let first = [12.0, 0.0, 0.0];
    let masked = [f32::NEG_INFINITY, 0.0, 0.0];
    let open = [0.0, 0.0, 0.0];
    let mut picks = Vec::new();
    for seed in 0..16 {
        let params =
            SamplingParams { seed, top_k: 0, top_p: 1.0, min_p: 0.0, temp: 1.0, ..Default::default() };
        let mut plain = SamplerChain::new(&params, &[]).expect("chain");
        let mut constrained = SamplerChain::new(&params, &[])
            .expect("chain")
            .with_grammar(Some(sampler("root ::= [bc] [abc]*", &v)));
        assert_eq!(plain.sample(&first), Some(0), "seed {seed}");
        let expected = plain.sample(&masked);
        let got = constrained.sample(&first);
        assert_eq!(got, expected, "seed {seed}");
        constrained.accept_generated(got.expect("token")).expect("allowed");
        assert_eq!(constrained.sample(&open), plain.sample(&open), "seed {seed}");
        picks.push(got);
    }
    assert!(picks.contains(&Some(1)) && picks.contains(&Some(2)), "the draw decides: {picks:?}");
}
