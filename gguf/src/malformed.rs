//! A corpus of malformed GGUF files, each a small change to one valid tiny llama model.
//!
//! Every [`Stage::Parse`] case must be refused by [`crate::GgufFile`] (never a panic); every
//! [`Stage::Load`] case is a well-formed file that a model loader must refuse (a required key or
//! tensor is missing or wrong). Binaries reuse the corpus to check their error handling.

use crate::dtype::DType;
use crate::names::{self, ArchKey, TensorKind};
use crate::value::{Value, ValueType};
use crate::writer::{put_str, put_value};

/// Where a case must fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `GgufFile::open` / `from_bytes` must return an error.
    Parse,
    /// The file parses; loading it as a model must fail.
    Load,
}

#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub stage: Stage,
    /// Parse cases: a fragment of the reader's error message. Load cases: the key or tensor name a
    /// loader's error should mention.
    pub expect: String,
    pub bytes: Vec<u8>,
}

/// The tiny model's shape: one layer, 4 heads of 8, 2 KV heads, tied output.
pub const N_EMBD: u64 = 32;
pub const N_FF: u64 = 64;
pub const N_HEAD: u64 = 4;
pub const N_HEAD_KV: u64 = 2;
const N_SPECIAL: usize = 3;
const MERGES: &[(&str, &str)] = &[("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a")];

/// Metadata and tensors before serialisation; cases edit this, then [`Model::assemble`] it.
#[derive(Clone)]
pub struct Model {
    pub kv: Vec<(String, Value)>,
    pub tensors: Vec<(String, Vec<u64>, DType, Vec<u8>)>,
}

/// Byte positions of the fields of an assembled file.
#[derive(Default)]
pub struct Layout {
    /// Per pair: (key length, type id, value).
    pub kv: Vec<(usize, usize, usize)>,
    /// Per tensor: (name length, dimension count, first dimension, type id, offset).
    pub tensors: Vec<(usize, usize, usize, usize, usize)>,
    pub tensor_table_end: usize,
    pub data_start: usize,
}

impl Model {
    /// The valid tiny llama: gpt2-style byte-level vocabulary with merges, f16 matrices, Q8_0
    /// embeddings and f32 norms, all seeded.
    pub fn tiny_llama() -> Model {
        let arch = "llama";
        let tokens = vocabulary();
        let n_vocab = tokens.len() as u64;
        let mut kv: Vec<(String, Value)> = vec![
            (names::KEY_ARCHITECTURE.into(), Value::String(arch.into())),
            (names::KEY_NAME.into(), Value::String("tiny malformed-corpus base".into())),
            (ArchKey::ContextLength.name(arch), Value::U32(256)),
            (ArchKey::EmbeddingLength.name(arch), Value::U32(N_EMBD as u32)),
            (ArchKey::BlockCount.name(arch), Value::U32(1)),
            (ArchKey::FeedForwardLength.name(arch), Value::U32(N_FF as u32)),
            (ArchKey::HeadCount.name(arch), Value::U32(N_HEAD as u32)),
            (ArchKey::HeadCountKv.name(arch), Value::U32(N_HEAD_KV as u32)),
            (ArchKey::RopeFreqBase.name(arch), Value::F32(10000.0)),
            (ArchKey::RmsEpsilon.name(arch), Value::F32(1e-5)),
            (ArchKey::RopeDimensionCount.name(arch), Value::U32((N_EMBD / N_HEAD) as u32)),
            (ArchKey::VocabSize.name(arch), Value::U32(n_vocab as u32)),
            (names::KEY_FILE_TYPE.into(), Value::U32(1)),
            (names::TOK_MODEL.into(), Value::String("gpt2".into())),
            (names::TOK_PRE.into(), Value::String("smollm".into())),
        ];
        let token_types = (0..tokens.len()).map(|i| Value::I32(if i < N_SPECIAL { 3 } else { 1 })).collect();
        let merges = MERGES.iter().map(|(a, b)| Value::String(format!("{a} {b}"))).collect();
        kv.extend([
            (
                names::TOK_TOKENS.into(),
                Value::Array(ValueType::String, tokens.into_iter().map(Value::String).collect()),
            ),
            (names::TOK_TOKEN_TYPE.into(), Value::Array(ValueType::I32, token_types)),
            (names::TOK_MERGES.into(), Value::Array(ValueType::String, merges)),
            (names::TOK_BOS_ID.into(), Value::U32(1)),
            (names::TOK_EOS_ID.into(), Value::U32(2)),
            (names::TOK_ADD_BOS.into(), Value::Bool(false)),
            (names::KEY_QUANT_VERSION.into(), Value::U32(2)),
            (names::TOK_CHAT_TEMPLATE.into(), Value::String("{{ messages[0]['content'] }}".into())),
        ]);

        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let (e, f, kv_dim) = (N_EMBD, N_FF, N_EMBD / N_HEAD * N_HEAD_KV);
        let mut tensors = vec![(TensorKind::TokenEmbd.weight(0), vec![e, n_vocab], DType::Q8_0, Vec::new())];
        tensors.push((TensorKind::OutputNorm.weight(0), vec![e], DType::F32, Vec::new()));
        for (kind, dims) in [
            (TensorKind::AttnNorm, vec![e]),
            (TensorKind::AttnQ, vec![e, e]),
            (TensorKind::AttnK, vec![e, kv_dim]),
            (TensorKind::AttnV, vec![e, kv_dim]),
            (TensorKind::AttnOutput, vec![e, e]),
            (TensorKind::FfnNorm, vec![e]),
            (TensorKind::FfnGate, vec![e, f]),
            (TensorKind::FfnUp, vec![e, f]),
            (TensorKind::FfnDown, vec![f, e]),
        ] {
            let dtype = if dims.len() == 1 { DType::F32 } else { DType::F16 };
            tensors.push((kind.weight(0), dims, dtype, Vec::new()));
        }
        for (_, dims, dtype, data) in &mut tensors {
            *data = rng.tensor_data(*dtype, dims.iter().product());
        }
        Model { kv, tensors }
    }

    /// Serialise like the writer does (v3, packed, 32-byte alignment) without any checks, recording
    /// where every field lands.
    pub fn assemble(&self) -> (Vec<u8>, Layout) {
        let align = 32usize;
        let mut out = Vec::new();
        let mut layout = Layout::default();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.kv.len() as u64).to_le_bytes());
        for (key, value) in &self.kv {
            let key_at = out.len();
            put_str(&mut out, key);
            let type_at = out.len();
            out.extend_from_slice(&(value.value_type() as u32).to_le_bytes());
            layout.kv.push((key_at, type_at, out.len()));
            put_value(&mut out, value);
        }
        let mut offset = 0usize;
        for (name, dims, dtype, data) in &self.tensors {
            let name_at = out.len();
            put_str(&mut out, name);
            let n_dims_at = out.len();
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            let dims_at = out.len();
            for d in dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            let type_at = out.len();
            out.extend_from_slice(&dtype.id().to_le_bytes());
            layout.tensors.push((name_at, n_dims_at, dims_at, type_at, out.len()));
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            offset += data.len().div_ceil(align) * align;
        }
        layout.tensor_table_end = out.len();
        out.resize(out.len().div_ceil(align) * align, 0);
        layout.data_start = out.len();
        for (_, _, _, data) in &self.tensors {
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(align) * align, 0);
        }
        (out, layout)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.assemble().0
    }

    fn without_key(mut self, key: &str) -> Model {
        self.kv.retain(|(k, _)| k != key);
        self
    }

    fn without_tensor(mut self, name: &str) -> Model {
        self.tensors.retain(|t| t.0 != name);
        self
    }

    fn with_value(mut self, key: &str, value: Value) -> Model {
        for (k, v) in &mut self.kv {
            if k == key {
                *v = value.clone();
            }
        }
        self
    }

    fn key_index(&self, key: &str) -> usize {
        self.kv.iter().position(|(k, _)| k == key).unwrap_or(0)
    }
}

/// The valid base file of the corpus.
pub fn valid_model() -> Vec<u8> {
    Model::tiny_llama().to_bytes()
}

/// Every malformed case (more than 30 parse errors and a dozen load errors).
pub fn corpus() -> Vec<Case> {
    let base = Model::tiny_llama();
    let (bytes, at) = base.assemble();
    let mut cases = Vec::new();
    let mut parse = |name: &str, expect: &str, bytes: Vec<u8>| {
        cases.push(Case { name: name.to_string(), stage: Stage::Parse, expect: expect.to_string(), bytes });
    };
    let cut = |n: usize| bytes[..n.min(bytes.len())].to_vec();
    let patch = |pos: usize, new: &[u8]| {
        let mut b = bytes.clone();
        b[pos..pos + new.len()].copy_from_slice(new);
        b
    };
    let u32le = |v: u32| v.to_le_bytes();
    let u64le = |v: u64| v.to_le_bytes();

    let arch_kv = at.kv[base.key_index(names::KEY_ARCHITECTURE)];
    let blocks_kv = at.kv[base.key_index(&ArchKey::BlockCount.name("llama"))];
    let tokens_kv = at.kv[base.key_index(names::TOK_TOKENS)];
    let token_type_kv = at.kv[base.key_index(names::TOK_TOKEN_TYPE)];
    let bool_kv = at.kv[base.key_index(names::TOK_ADD_BOS)];
    // Truncations inside metadata cut late pairs: a cut early in the file is already refused by the
    // plausibility check of the pair count, before the cut field is reached.
    let quant_kv = at.kv[base.key_index(names::KEY_QUANT_VERSION)];
    let template_kv = at.kv[base.key_index(names::TOK_CHAT_TEMPLATE)];
    let (t0, t1, t_last) = (at.tensors[0], at.tensors[1], at.tensors[at.tensors.len() - 1]);

    // ---- truncation in every section ----
    parse("empty_file", "truncated while reading magic", Vec::new());
    parse("truncated_magic", "truncated while reading magic", cut(2));
    parse("truncated_version", "reading version", cut(6));
    parse("truncated_tensor_count", "reading tensor count", cut(12));
    parse("truncated_kv_count", "reading metadata count", cut(20));
    parse("truncated_kv_key_length", "reading metadata key", cut(quant_kv.0 + 3));
    parse("truncated_kv_key", "reading metadata key", cut(quant_kv.0 + 10));
    parse("truncated_kv_type", "reading metadata value type", cut(quant_kv.1 + 2));
    parse("truncated_kv_string_value", "reading tokenizer.chat_template", cut(template_kv.2 + 10));
    parse("truncated_kv_u32_value", "reading general.quantization_version", cut(quant_kv.2 + 2));
    parse("truncated_array_header", "reading tokenizer.ggml.tokens", cut(tokens_kv.2 + 6));
    parse("truncated_array_items", "reading tokenizer.ggml.tokens", cut(token_type_kv.0 - 3));
    parse("truncated_tensor_name", "reading tensor name", cut(t0.0 + 10));
    parse("truncated_tensor_dims", "reading tensor dimension", cut(t0.2 + 4));
    parse("truncated_tensor_type", "reading tensor type", cut(t0.3 + 1));
    parse("truncated_tensor_offset", "reading tensor offset", cut(t_last.4 + 5));
    parse("truncated_before_data", "truncated while reading data section", cut(at.tensor_table_end));
    parse("truncated_first_tensor_data", "'token_embd.weight': 8976 bytes", cut(at.data_start + 100));
    parse("truncated_last_tensor_data", "'blk.0.ffn_down.weight': 4096 bytes", cut(bytes.len() - 40));

    // ---- header ----
    parse("bad_magic", "not a GGUF file", patch(0, b"GGUG"));
    parse("version_1", "version 1 ", patch(4, &u32le(1)));
    parse("version_4", "version 4 ", patch(4, &u32le(4)));
    parse("version_big_endian", "version 50331648", patch(4, &u32le(3u32.swap_bytes())));

    // ---- huge counts and lengths ----
    parse("huge_tensor_count", "tensor count 4611686018427387904 is implausible", patch(8, &u64le(1 << 62)));
    parse("huge_kv_count", "metadata count 18446744073709551615", patch(16, &u64le(u64::MAX)));
    parse(
        "huge_array_length",
        "array 'tokenizer.ggml.tokens': length 1099511627776",
        patch(tokens_kv.2 + 4, &u64le(1 << 40)),
    );
    parse("huge_key_length", "metadata key: length 18446744073709551615", patch(arch_kv.0, &u64le(u64::MAX)));
    parse(
        "huge_string_value_length",
        "general.architecture: length 2147483653",
        patch(arch_kv.2, &u64le((1 << 31) + 5)),
    );
    parse("huge_tensor_name_length", "tensor name: length 1125899906842624", patch(t0.0, &u64le(1 << 50)));

    // ---- metadata values ----
    parse("bad_value_type", "unknown metadata value type 13", patch(blocks_kv.1, &u32le(13)));
    parse("bad_array_element_type", "unknown metadata value type 99", patch(tokens_kv.2, &u32le(99)));
    parse("nested_array", "nested arrays", patch(tokens_kv.2, &u32le(ValueType::Array as u32)));
    parse("bad_bool", "a bool must be 0 or 1", patch(bool_kv.2, &[2]));
    parse("invalid_utf8_key", "invalid UTF-8 in metadata key", patch(arch_kv.0 + 8, &[0xff]));
    parse("invalid_utf8_value", "invalid UTF-8 in general.architecture", patch(arch_kv.2 + 8, &[0xc3, 0x28]));
    parse("invalid_utf8_tensor_name", "invalid UTF-8 in tensor name", patch(t1.0 + 8, &[0x80]));
    parse("empty_key", "metadata key #4 is empty", patch(blocks_kv.0, &u64le(0)));

    // ---- tensor table ----
    parse("zero_dims", "0 dimensions", patch(t1.1, &u32le(0)));
    parse("five_dims", "5 dimensions", patch(t1.1, &u32le(5)));
    parse("zero_dimension", "bad shape [0]", patch(t1.2, &u64le(0)));
    parse("negative_dimension", "bad shape [18446744073709551615]", patch(t1.2, &u64le(u64::MAX)));
    parse("element_count_overflow", "element count overflows", {
        let b = patch(t0.2, &u64le(1 << 32));
        let mut b2 = b.clone();
        b2[t0.2 + 8..t0.2 + 16].copy_from_slice(&u64le(1 << 32));
        b2
    });
    parse("byte_size_overflow", "byte size overflows", patch(t1.2, &u64le(1 << 62)));
    parse("row_not_whole_blocks", "not a multiple of the q8_0 block size", patch(t0.2, &u64le(N_EMBD + 1)));
    parse("removed_dtype", "unknown ggml type id 4", patch(t1.3, &u32le(4)));
    parse("unknown_dtype", "unknown ggml type id 1000", patch(t1.3, &u32le(1000)));
    parse(
        "offset_overflow",
        "at data offset 18446744073709551584 lie outside",
        patch(t1.4, &u64le(u64::MAX - 31)),
    );
    parse("offset_outside_file", "at data offset 1073741824 lie outside", patch(t_last.4, &u64le(1 << 30)));
    parse("misaligned_offset", "not a multiple of the alignment 32", {
        let off = u64::from_le_bytes(bytes[t1.4..t1.4 + 8].try_into().unwrap_or([0; 8]));
        patch(t1.4, &u64le(off + 4))
    });
    parse(
        "overlapping_tensors",
        "'token_embd.weight' overlaps tensor 'output_norm.weight'",
        patch(t1.4, &u64le(0)),
    );
    parse("gap_between_tensors", "leaves a gap", {
        let off = u64::from_le_bytes(bytes[t_last.4..t_last.4 + 8].try_into().unwrap_or([0; 8]));
        let mut b = patch(t_last.4, &u64le(off + 32));
        b.resize(b.len() + 64, 0);
        b
    });
    parse("tensor_name_too_long", "name is longer than 63 bytes", {
        let mut m = base.clone();
        m.tensors[1].0 = format!("blk.0.{}", "x".repeat(60));
        m.to_bytes()
    });

    // ---- whole-model edits ----
    let alignment = |v: Value| base.clone().with_value_or_push(names::KEY_ALIGNMENT, v).to_bytes();
    parse("alignment_zero", "bad alignment 0", alignment(Value::U32(0)));
    parse("alignment_not_power_of_two", "bad alignment 48", alignment(Value::U32(48)));
    parse("alignment_not_u32", "'general.alignment' has type u64, expected u32", alignment(Value::U64(32)));
    parse("duplicate_key", "duplicate metadata key 'llama.block_count'", {
        let mut m = base.clone();
        m.kv.push((ArchKey::BlockCount.name("llama"), Value::U32(1)));
        m.to_bytes()
    });
    parse("duplicate_tensor", "duplicate tensor 'blk.0.attn_norm.weight'", {
        let mut m = base.clone();
        let copy = m.tensors[2].clone();
        m.tensors.push(copy);
        m.to_bytes()
    });

    // ---- well-formed files that are not loadable models ----
    let mut load = |name: &str, expect: &str, model: Model| {
        let (name, expect) = (name.to_string(), expect.to_string());
        cases.push(Case { name, stage: Stage::Load, expect, bytes: model.to_bytes() });
    };
    load("missing_architecture", names::KEY_ARCHITECTURE, base.clone().without_key(names::KEY_ARCHITECTURE));
    load(
        "unknown_architecture",
        "nope",
        base.clone().with_value(names::KEY_ARCHITECTURE, Value::String("nope".into())),
    );
    load(
        "missing_block_count",
        "llama.block_count",
        base.clone().without_key(&ArchKey::BlockCount.name("llama")),
    );
    load(
        "missing_embedding_length",
        "llama.embedding_length",
        base.clone().without_key(&ArchKey::EmbeddingLength.name("llama")),
    );
    load(
        "missing_head_count",
        "llama.attention.head_count",
        base.clone().without_key(&ArchKey::HeadCount.name("llama")),
    );
    load(
        "block_count_is_string",
        "llama.block_count",
        base.clone().with_value(&ArchKey::BlockCount.name("llama"), Value::String("1".into())),
    );
    load("missing_tokenizer_model", names::TOK_MODEL, base.clone().without_key(names::TOK_MODEL));
    load("missing_tokenizer_tokens", names::TOK_TOKENS, base.clone().without_key(names::TOK_TOKENS));
    load(
        "missing_token_embd",
        "token_embd.weight",
        base.clone().without_tensor(&TensorKind::TokenEmbd.weight(0)),
    );
    load(
        "missing_output_norm",
        "output_norm.weight",
        base.clone().without_tensor(&TensorKind::OutputNorm.weight(0)),
    );
    load("missing_attn_q", "blk.0.attn_q.weight", base.clone().without_tensor(&TensorKind::AttnQ.weight(0)));
    load(
        "missing_ffn_down",
        "blk.0.ffn_down.weight",
        base.clone().without_tensor(&TensorKind::FfnDown.weight(0)),
    );
    load("wrong_shape_attn_q", "blk.0.attn_q.weight", {
        let mut m = base.clone();
        if let Some(t) = m.tensors.iter_mut().find(|t| t.0 == TensorKind::AttnQ.weight(0)) {
            t.1 = vec![N_EMBD / 2, N_EMBD * 2];
        }
        m
    });
    cases
}

impl Model {
    fn with_value_or_push(mut self, key: &str, value: Value) -> Model {
        match self.kv.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.kv.insert(1, (key.to_string(), value)),
        }
        self
    }
}

/// Three specials, the 256 byte tokens in GPT-2's printable mapping, then one token per merge.
fn vocabulary() -> Vec<String> {
    let mut tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"].map(String::from).to_vec();
    tokens.extend((0u8..=255).map(|b| gpt2_byte_char(b).to_string()));
    tokens.extend(MERGES.iter().map(|(a, b)| format!("{a}{b}")));
    tokens
}

/// GPT-2's byte-to-character table: printable Latin-1 bytes stand for themselves, the others are
/// moved to U+0100 and up in byte order.
fn gpt2_byte_char(b: u8) -> char {
    let printable = |x: u8| matches!(x, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff);
    if printable(b) {
        return char::from(b);
    }
    let rank = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + rank).unwrap_or('?')
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn tensor_data(&mut self, dtype: DType, n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        match dtype {
            DType::F32 => {
                (0..n).for_each(|_| out.extend_from_slice(&(1.0 + 0.1 * self.unit()).to_le_bytes()))
            }
            DType::F16 => (0..n)
                .for_each(|_| out.extend_from_slice(&half::f16::from_f32(0.2 * self.unit()).to_le_bytes())),
            _ => (0..n / 32).for_each(|_| {
                // Q8_0: a scale, then 32 signed bytes.
                out.extend_from_slice(&half::f16::from_f32(0.004).to_le_bytes());
                (0..32).for_each(|_| out.push(self.next() as u8));
            }),
        }
        out
    }
}
