//! `/infill`: llama-server's fill-in-the-middle prompt (its `format_prompt_infill`: the
//! repo-level layout of arXiv:2409.12186 when the model has the tokens, `--spm-infill`'s
//! suffix-first order), checked and tokenized as llama-server does, then run as a native
//! `/completion` of those tokens.
//!
//! Some of llama-server's checks set an error and carry on (a `prompt` that is not a string, a
//! missing `input_prefix`): what it answers then is what happens next (an empty prompt; a
//! missing-key error from reading the field), so the same happens here.

use axum::response::Response;
use serde_json::Value;

use super::info::Ctx;
use super::{completion, params, Vocabulary};
use crate::server::api::{ApiError, ErrorKind};
use crate::TokenId;

/// The vocabulary's fill-in-the-middle tokens, and BOS when the vocabulary adds it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FimTokens {
    pub pre: Option<TokenId>,
    pub suf: Option<TokenId>,
    pub mid: Option<TokenId>,
    pub rep: Option<TokenId>,
    pub sep: Option<TokenId>,
    pub bos: Option<TokenId>,
}

/// `"\n\n--- snippet ---\n\n"`: what separates extra chunks without a file separator token.
const CHUNK_PREFIX: &str = "\n\n--- snippet ---\n\n";

pub async fn handle(ctx: &Ctx<'_>, bytes: &[u8], id: u64) -> Result<Response, ApiError> {
    let vocab = ctx.loaded.vocab.as_ref();
    let fim = vocab.fim();
    let mut missing = String::new();
    for (tok, what) in [(fim.pre, "prefix"), (fim.suf, "suffix"), (fim.mid, "middle")] {
        if tok.is_none() {
            missing += &format!("{what} token is missing. ");
        }
    }
    let (Some(pre), Some(suf), Some(mid)) = (fim.pre, fim.suf, fim.mid) else {
        return Err(ApiError::new(
            ErrorKind::NotSupported,
            format!("Infill is not supported by this model: {missing}"),
        ));
    };
    let mut body = params::parse_body(bytes)?;
    let extra = match body.get("input_extra") {
        None => Vec::new(),
        Some(Value::Array(chunks)) => chunks.clone(),
        Some(_) => {
            return Err(ApiError::invalid(
                "\"input_extra\" must be an array of {\"filename\": string, \"text\": string}",
            ))
        }
    };
    let mut chunks = Vec::with_capacity(extra.len());
    for chunk in &extra {
        let Some(text) = chunk.get("text").and_then(Value::as_str) else {
            return Err(ApiError::invalid(
                "extra_context chunk must contain a \"text\" field with a string value",
            ));
        };
        let filename = match chunk.get("filename") {
            None => "tmp",
            Some(Value::String(f)) => f.as_str(),
            Some(_) => {
                return Err(ApiError::invalid("extra_context chunk's \"filename\" field must be a string"))
            }
        };
        chunks.push((filename.to_string(), text.to_string()));
    }
    // `json_value(data, "prompt", "")`: a prompt of another type is the empty string.
    let prompt = body.get("prompt").and_then(Value::as_str).unwrap_or_default();
    let prompt_tokens = vocab.encode(prompt, false, true);
    let missing_key =
        |k: &str| ApiError::invalid(format!("[json.exception.out_of_range.403] key '{k}' not found"));
    let prefix = body.get("input_prefix").ok_or_else(|| missing_key("input_prefix"))?;
    let suffix = body.get("input_suffix").ok_or_else(|| missing_key("input_suffix"))?;
    let prefix = params::mixed(prefix, vocab, false, false)?;
    let suffix = params::mixed(suffix, vocab, false, false)?;
    let cfg = &ctx.state.cfg;
    let n_batch = effective_batch(cfg) as i64;
    let layout = Layout {
        n_batch,
        n_predict: i64::from(cfg.n_predict),
        n_ctx: ctx.loaded.backend.n_ctx_slot() as i64,
        spm: cfg.spm_infill,
    };
    let tokens =
        format_infill(vocab, &fim, (pre, suf, mid), &layout, prefix, suffix, &chunks, &prompt_tokens);
    if let Value::Object(o) = &mut body {
        o.insert("prompt".into(), Value::from(tokens));
    }
    let bytes = serde_json::to_vec(&body).map_err(|e| ApiError::new(ErrorKind::Server, e.to_string()))?;
    completion::handle(ctx, completion::Kind::Native, &bytes, id).await
}

/// `-b` as llama-server runs it: with `--embeddings` it is cut to `-ub`.
fn effective_batch(cfg: &crate::server::args::ServerConfig) -> u32 {
    if cfg.embedding {
        cfg.n_batch.min(cfg.n_ubatch)
    } else {
        cfg.n_batch
    }
}

/// The sizes the layout is cut to.
struct Layout {
    n_batch: i64,
    n_predict: i64,
    n_ctx: i64,
    spm: bool,
}

/// llama-server's `format_prompt_infill`: `[FIM_REP]myproject\n` and each extra chunk after
/// `[FIM_SEP]filename\n` (or a snippet line without that token), `[FIM_SEP]filename\n`, then
/// `[FIM_PRE]prefix[FIM_SUF]suffix` (suffix first with `--spm-infill`) and `[FIM_MID]`; the
/// prefix and suffix cut to fit a batch 3:1, the extra context to what the context leaves.
#[allow(clippy::too_many_arguments)]
fn format_infill(
    vocab: &dyn Vocabulary,
    fim: &FimTokens,
    (pre, suf, mid): (TokenId, TokenId, TokenId),
    l: &Layout,
    mut prefix: Vec<TokenId>,
    mut suffix: Vec<TokenId>,
    chunks: &[(String, String)],
    prompt: &[TokenId],
) -> Vec<TokenId> {
    let mut extra = Vec::new();
    if let Some(rep) = fim.rep {
        extra.push(rep);
        extra.extend(vocab.encode("myproject\n", false, false));
    }
    for (filename, text) in chunks {
        match fim.sep {
            Some(sep) => {
                extra.push(sep);
                extra.extend(vocab.encode(&format!("{filename}\n"), false, false));
            }
            None => extra.extend(vocab.encode(CHUNK_PREFIX, false, false)),
        }
        extra.extend(vocab.encode(text, false, false));
    }
    if let Some(sep) = fim.sep {
        extra.push(sep);
        extra.extend(vocab.encode("filename\n", false, false));
    }
    let n_prefix_take = (prefix.len() as i64).min(3 * (l.n_batch / 4)).max(0) as usize;
    let n_suffix_take =
        (suffix.len() as i64).min((l.n_batch / 4 - (2 + prompt.len() as i64)).max(0)) as usize;
    let n_extra_take = (l.n_ctx - l.n_batch - 2 * l.n_predict).max(0).min(extra.len() as i64) as usize;
    prefix.drain(..prefix.len() - n_prefix_take);
    suffix.truncate(n_suffix_take);
    prefix.insert(0, pre);
    prefix.extend_from_slice(prompt);
    suffix.insert(0, suf);
    let (mut inp, end) = if l.spm { (suffix, prefix) } else { (prefix, suffix) };
    if let Some(bos) = fim.bos {
        inp.insert(0, bos);
    }
    let mut out = extra[extra.len() - n_extra_take..].to_vec();
    out.extend(inp);
    out.extend(end);
    out.push(mid);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes as tokens 1..=256.
    struct Bytes;
    impl Vocabulary for Bytes {
        fn n_vocab(&self) -> usize {
            300
        }
        fn encode(&self, text: &str, _: bool, _: bool) -> Vec<TokenId> {
            text.bytes().map(|b| b as TokenId + 1).collect()
        }
        fn piece(&self, _: TokenId) -> Vec<u8> {
            Vec::new()
        }
    }

    #[test]
    fn lays_out_as_llama_server() {
        let fim = FimTokens { rep: Some(290), sep: Some(291), bos: Some(0), ..Default::default() };
        let l = Layout { n_batch: 16, n_predict: -1, n_ctx: 4096, spm: false };
        let chunks = vec![("a".to_string(), "x".to_string())];
        let out = format_infill(
            &Bytes,
            &fim,
            (280, 281, 282),
            &l,
            vec![10, 11, 12, 13],
            vec![20, 21, 22],
            &chunks,
            &[5],
        );
        let mut want = vec![290];
        want.extend(Bytes.encode("myproject\n", false, false));
        want.push(291);
        want.extend(Bytes.encode("a\n", false, false));
        want.extend(Bytes.encode("x", false, false));
        want.push(291);
        want.extend(Bytes.encode("filename\n", false, false));
        // prefix: all 4 (<= 12); suffix: 16/4 - (2 + 1) = 1 token
        want.extend([0, 280, 10, 11, 12, 13, 5, 281, 20, 282]);
        assert_eq!(out, want);
        let spm = Layout { spm: true, ..l };
        let out =
            format_infill(&Bytes, &FimTokens::default(), (280, 281, 282), &spm, vec![10], vec![20], &[], &[]);
        assert_eq!(out, vec![281, 20, 280, 10, 282]);
    }
}
