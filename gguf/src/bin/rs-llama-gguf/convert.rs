//! `rs-llama-gguf convert IN OUT --type f16|bf16`: the same file `llama-quantize --allow-requantize IN OUT
//! F16|BF16` writes.
//!
//! What llama-quantize does, and so what this does:
//! - metadata: the input's pairs in order, without the split keys, then `general.quantization_version`
//!   and `general.file_type` moved to the end with new values;
//! - tensors: ordered by layer number (tensors outside `blk.N.` first), then by name; shapes lose
//!   trailing 1-sized dimensions;
//! - only weight matrices change type (see [`converts`]); norms, biases and 1-D tensors keep theirs;
//! - values go through f32 and are rounded to nearest even; data is padded to 32 bytes.
//!
//! The output is streamed tensor by tensor, a slab of rows at a time.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use gguf::dequant;
use gguf::names::{KEY_FILE_TYPE, KEY_QUANT_VERSION};
use gguf::writer::{alignment_of, header_bytes, TensorHeader};
use gguf::{DType, GgufFile, TensorInfo, Value};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Target {
    F16,
    Bf16,
}

#[derive(clap::Args)]
pub struct Args {
    /// Input GGUF file (any type the dequantizer knows).
    input: PathBuf,
    /// Output GGUF file.
    output: PathBuf,
    /// Type of the converted weight matrices.
    #[arg(long = "type", value_enum)]
    target: Target,
    /// Set a u32 metadata key, `KEY=N` (repeatable): replaced in place when the input has it, else
    /// added after the input's keys. Made for test models, e.g. FIM token ids
    /// (`tokenizer.ggml.fim_pre_token_id=7`) on a model that has none.
    #[arg(long = "set-u32", value_name = "KEY=N", value_parser = parse_set_u32)]
    set_u32: Vec<(String, u32)>,
}

fn parse_set_u32(s: &str) -> Result<(String, u32), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("expected KEY=N, got '{s}'"))?;
    let n = v.trim().parse::<u32>().map_err(|_| format!("'{v}' is not a u32"))?;
    if k.is_empty() {
        return Err(format!("expected KEY=N, got '{s}'"));
    }
    Ok((k.to_string(), n))
}

/// ggml's GGML_QNT_VERSION, which llama-quantize stamps on every file it writes.
const QUANT_VERSION: u32 = 2;
/// Split metadata that llama-quantize drops.
const SPLIT_KEYS: [&str; 3] = ["split.no", "split.count", "split.tensors.count"];
/// Elements converted per slab (bounds the f32 buffer to 16 MiB).
const SLAB_ELEMS: usize = 4 << 20;

impl Target {
    fn dtype(self) -> DType {
        match self {
            Target::F16 => DType::F16,
            Target::Bf16 => DType::BF16,
        }
    }

    /// llama.cpp's `LLAMA_FTYPE_MOSTLY_F16` / `LLAMA_FTYPE_MOSTLY_BF16`.
    fn file_type(self) -> u32 {
        match self {
            Target::F16 => 1,
            Target::Bf16 => 32,
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let input = GgufFile::open(&args.input)?;
    let target = args.target.dtype();

    let mut kv: Vec<(String, Value)> = input
        .kv
        .iter()
        .filter(|(k, _)| k != KEY_QUANT_VERSION && k != KEY_FILE_TYPE && !SPLIT_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    for (key, n) in &args.set_u32 {
        match kv.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = Value::U32(*n),
            None => kv.push((key.clone(), Value::U32(*n))),
        }
    }
    kv.push((KEY_QUANT_VERSION.to_string(), Value::U32(QUANT_VERSION)));
    kv.push((KEY_FILE_TYPE.to_string(), Value::U32(args.target.file_type())));
    let alignment = alignment_of(&kv);

    let mut order: Vec<&TensorInfo> = input.tensors.iter().collect();
    order.sort_by(|a, b| (layer_of(&a.name), &a.name).cmp(&(layer_of(&b.name), &b.name)));

    let mut table = Vec::with_capacity(order.len());
    for t in &order {
        let dtype = if converts(t) { target } else { t.dtype };
        if dtype != t.dtype && !dequant::supports(t.dtype) {
            bail!("tensor '{}': cannot convert {} to {}", t.name, t.dtype, dtype);
        }
        table.push(TensorHeader { name: t.name.clone(), dims: trimmed_dims(&t.dims), dtype });
    }
    let header = header_bytes(&kv, &table, alignment)?;

    let out_path = args.output.display().to_string();
    // Creating the output would truncate the mapped input under our feet.
    if let (Ok(a), Ok(b)) = (args.input.canonicalize(), args.output.canonicalize()) {
        if a == b {
            bail!("output {out_path} is the input file");
        }
    }
    let file = File::create(&args.output).with_context(|| format!("cannot create {out_path}"))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let progress = progress_bar(order.len() as u64);
    let write_all = |out: &mut BufWriter<File>| -> anyhow::Result<()> {
        out.write_all(&header)?;
        for (info, entry) in order.iter().zip(&table) {
            progress.set_message(info.name.clone());
            let written = write_tensor(&input, info, entry.dtype, out)?;
            let padding = written.next_multiple_of(alignment) - written;
            out.write_all(&vec![0u8; padding as usize])?;
            progress.inc(1);
        }
        out.flush()?;
        Ok(())
    };
    let result = write_all(&mut out).with_context(|| format!("writing {out_path}"));
    progress.finish_and_clear();
    result?;
    eprintln!(
        "converted {} tensors ({} to {}) into {out_path}",
        table.len(),
        table.iter().filter(|t| t.dtype == target).count(),
        target
    );
    Ok(())
}

/// Whether llama-quantize would give this tensor the target type: weight matrices only, never norms,
/// MoE routers or the small tables it keeps exact.
fn converts(t: &TensorInfo) -> bool {
    const KEEP: &[&str] = &[
        "_norm.weight",
        "ffn_gate_inp.weight",
        "ffn_gate_tid2eid.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "position_embd.weight",
        "token_types.weight",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "time_mix_first.weight",
        "time_mix_w0.weight",
        "time_mix_w1.weight",
        "time_mix_w2.weight",
        "time_mix_v0.weight",
        "time_mix_v1.weight",
        "time_mix_v2.weight",
        "time_mix_a0.weight",
        "time_mix_a1.weight",
        "time_mix_a2.weight",
        "time_mix_g1.weight",
        "time_mix_g2.weight",
        "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight",
        "attn_rel_b.weight",
    ];
    trimmed_dims(&t.dims).len() >= 2 && t.name.ends_with("weight") && !KEEP.iter().any(|k| t.name.contains(k))
}

/// The layer number llama.cpp sorts by: N for `blk.N.…`, -1 otherwise.
fn layer_of(name: &str) -> i64 {
    let Some(rest) = name.strip_prefix("blk.") else { return -1 };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().unwrap_or(-1)
}

/// Shape without trailing 1-sized dimensions (at least one kept), as ggml counts dimensions.
fn trimmed_dims(dims: &[u64]) -> Vec<u64> {
    let keep = dims.iter().rposition(|&d| d != 1).map_or(1, |i| i + 1);
    dims[..keep.min(dims.len())].to_vec()
}

/// Write one tensor's data in `dtype`; returns the bytes written.
fn write_tensor(
    input: &GgufFile,
    info: &TensorInfo,
    dtype: DType,
    out: &mut impl Write,
) -> anyhow::Result<u64> {
    let bytes = input.tensor_bytes(info);
    if dtype == info.dtype {
        out.write_all(bytes)?;
        return Ok(bytes.len() as u64);
    }
    // Whole rows per slab, so slabs are whole blocks of the source type.
    let row_elems = info.dims.first().copied().unwrap_or(1) as usize;
    let row_bytes = info.dtype.bytes_for(row_elems as u64).unwrap_or(0) as usize;
    if row_bytes == 0 {
        bail!("tensor '{}': empty rows", info.name);
    }
    let rows_per_slab = (SLAB_ELEMS / row_elems.max(1)).max(1);
    let mut values = Vec::new();
    let mut encoded = Vec::new();
    let mut written = 0u64;
    for slab in bytes.chunks(rows_per_slab * row_bytes) {
        values.resize(slab.len() / row_bytes * row_elems, 0f32);
        dequant::dequantize_into(info.dtype, slab, &mut values)?;
        encoded.clear();
        match dtype {
            DType::BF16 => dequant::encode_bf16(&values, &mut encoded),
            _ => dequant::encode_f16(&values, &mut encoded),
        }
        out.write_all(&encoded)?;
        written += encoded.len() as u64;
    }
    Ok(written)
}

fn progress_bar(n: u64) -> ProgressBar {
    let bar = ProgressBar::new(n);
    let style = ProgressStyle::with_template("{bar:40} {pos}/{len} tensors {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}
