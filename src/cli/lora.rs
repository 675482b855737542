//! `--lora FNAME[,FNAME...]` and `--lora-scaled FNAME:SCALE[,...]` as llama.cpp's common/arg.cpp
//! reads them (shared by rs-llama and rs-llama-server), and loading what they name.

use std::path::PathBuf;
use std::sync::Arc;

use crate::model::lora::{ActiveLora, LoraAdapter};
use crate::model::Model;

/// One adapter asked for on the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraArg {
    pub path: PathBuf,
    pub scale: f32,
}

/// `--lora`: a comma-separated list (a field may be quoted, `""` inside quotes is a quote), each
/// at scale 1.
pub fn parse_lora(value: &str) -> Vec<LoraArg> {
    csv_row(value).into_iter().map(|p| LoraArg { path: p.into(), scale: 1.0 }).collect()
}

/// `--lora-scaled`: comma-separated `FNAME:SCALE` (exactly one colon each, as llama.cpp splits).
pub fn parse_lora_scaled(value: &str) -> Result<Vec<LoraArg>, String> {
    csv_row(value)
        .into_iter()
        .map(|item| {
            let parts: Vec<&str> = item.split(':').collect();
            let [path, scale] = parts[..] else { return Err("lora-scaled format: FNAME:SCALE".to_string()) };
            let scale = super::args::parse_f32(scale)?;
            Ok(LoraArg { path: path.into(), scale })
        })
        .collect()
}

/// llama.cpp's parse_csv_row: fields split at commas outside quotes; a quote opens a quoted field
/// only at the start of one (elsewhere it is literal); the last field always counts.
fn csv_row(input: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut chars = input.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if !in_quotes && !field.is_empty() => field.push('"'),
            '"' if !in_quotes => in_quotes = true,
            '"' if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => in_quotes = false,
            ',' if !in_quotes => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// Load every adapter for `model`, in order; the error is the whole line for stderr.
pub fn load_all(model: &Model, args: &[LoraArg]) -> Result<Vec<ActiveLora>, String> {
    args.iter()
        .map(|a| {
            let adapter = LoraAdapter::open(model, &a.path)
                .map_err(|e| format!("failed to load lora adapter '{}': {e}", a.path.display()))?;
            Ok(ActiveLora { adapter: Arc::new(adapter), scale: a.scale })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_scales_read_as_llama_cpp_reads_them() {
        let paths = |v: Vec<LoraArg>| {
            v.into_iter().map(|a| (a.path.display().to_string(), a.scale)).collect::<Vec<_>>()
        };
        assert_eq!(paths(parse_lora("a.gguf,b.gguf")), [("a.gguf".into(), 1.0), ("b.gguf".into(), 1.0)]);
        assert_eq!(paths(parse_lora(r#""x,y.gguf",z"#)), [("x,y.gguf".into(), 1.0), ("z".into(), 1.0)]);
        assert_eq!(paths(parse_lora(r#"a"b"#)), [(r#"a"b"#.into(), 1.0)]);
        assert_eq!(
            paths(parse_lora_scaled("a.gguf:0.5,b:-2").unwrap()),
            [("a.gguf".into(), 0.5), ("b".into(), -2.0)]
        );
        assert_eq!(parse_lora_scaled("a.gguf").unwrap_err(), "lora-scaled format: FNAME:SCALE");
        assert_eq!(parse_lora_scaled("c:/a.gguf:1").unwrap_err(), "lora-scaled format: FNAME:SCALE");
        assert!(parse_lora_scaled("a.gguf:x").is_err());
    }
}
