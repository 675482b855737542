//! `rs-llama-gguf info FILE`: the header, every metadata pair and the tensor table, laid out like
//! gguf-py's `gguf-dump` (index, type, element count, name = value; arrays shortened).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use gguf::{GgufFile, Value};

#[derive(clap::Args)]
pub struct Args {
    /// GGUF file to describe.
    file: PathBuf,
}

/// How many array elements and string characters to show before eliding.
const ARRAY_SHOWN: usize = 6;
const STRING_SHOWN: usize = 60;

pub fn run(args: Args) -> anyhow::Result<()> {
    let file = GgufFile::open(&args.file)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    write_info(&file, &mut out).and_then(|()| out.flush()).context("writing to stdout")?;
    Ok(())
}

fn write_info(file: &GgufFile, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "GGUF v{}: {} key/value pairs, {} tensors, alignment {}, data at offset {}",
        file.version,
        file.kv.len(),
        file.tensors.len(),
        file.alignment,
        file.data_offset
    )?;
    writeln!(out, "* {} key/value pairs", file.kv.len())?;
    for (i, (key, value)) in file.kv.iter().enumerate() {
        let (type_name, count) = match value {
            Value::Array(ty, items) => (format!("[{}]", value_type_name(*ty)), items.len()),
            other => (value_type_name(other.value_type()).to_string(), 1),
        };
        writeln!(out, "  {:5}: {type_name:10} | {count:8} | {key} = {}", i + 1, show(value))?;
    }
    writeln!(out, "* {} tensors", file.tensors.len())?;
    for (i, t) in file.tensors.iter().enumerate() {
        let dims: Vec<String> =
            (0..4).map(|d| format!("{:5}", t.dims.get(d).copied().unwrap_or(1))).collect();
        writeln!(
            out,
            "  {:5}: {:10} | {} | {:7} | offset {:12} | {:10} bytes | {}",
            i + 1,
            t.n_elems(),
            dims.join(", "),
            t.dtype.name(),
            t.offset,
            t.n_bytes,
            t.name
        )?;
    }
    Ok(())
}

fn value_type_name(ty: gguf::ValueType) -> &'static str {
    use gguf::ValueType::*;
    match ty {
        U8 => "UINT8",
        I8 => "INT8",
        U16 => "UINT16",
        I16 => "INT16",
        U32 => "UINT32",
        I32 => "INT32",
        F32 => "FLOAT32",
        Bool => "BOOL",
        String => "STRING",
        Array => "ARRAY",
        U64 => "UINT64",
        I64 => "INT64",
        F64 => "FLOAT64",
    }
}

fn show(value: &Value) -> String {
    match value {
        Value::String(s) => {
            // Quote and escape like Python's repr would, so control characters stay on one line.
            if s.chars().count() > STRING_SHOWN {
                let head: String = s.chars().take(STRING_SHOWN - 3).collect();
                format!("{:?}", head + "...")
            } else {
                format!("{s:?}")
            }
        }
        Value::Array(_, items) => {
            let shown: Vec<String> = items.iter().take(ARRAY_SHOWN).map(show).collect();
            let more = if items.len() > ARRAY_SHOWN { ", ..." } else { "" };
            format!("[{}{more}]", shown.join(", "))
        }
        Value::F32(x) => format!("{x}"),
        Value::F64(x) => format!("{x}"),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        other => other.as_i128().map(|v| v.to_string()).unwrap_or_default(),
    }
}
