//! `rs-llama-tokenize`: print the tokens of a prompt, like llama.cpp's `llama-tokenize`.
//!
//! Only the vocab is read from the GGUF (no weights). Output matches llama-tokenize byte for byte:
//! `%6d -> '<piece>'` lines (or `[1, 2, 3]` with `--ids`) on stdout; errors are one line on stderr
//! and exit code 1.

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use gguf::GgufFile;
use rs_llama::tokenizer::Tokenizer;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "rs-llama-tokenize", version, args_override_self = true)]
#[command(about = "Tokenize a prompt with the vocab of a GGUF model, as llama-tokenize does")]
struct Args {
    /// Model file (only its vocab is read).
    #[arg(short = 'm', long = "model", value_name = "FNAME")]
    model: Option<PathBuf>,
    /// Prompt text (escapes such as \n are processed unless --no-escape).
    #[arg(short = 'p', long = "prompt", value_name = "PROMPT", allow_hyphen_values = true)]
    prompt: Option<OsString>,
    /// File holding the prompt, read verbatim (then escapes are processed); wins over -p.
    #[arg(short = 'f', long = "file", value_name = "FNAME")]
    file: Option<PathBuf>,
    /// Read the prompt from standard input (wins over -f and -p).
    #[arg(long)]
    stdin: bool,
    /// Print only the ids, as a list like [1, 2, 3].
    #[arg(long)]
    ids: bool,
    /// Do not add BOS even if the model asks for it.
    #[arg(long = "no-bos")]
    no_bos: bool,
    /// Do not turn the text of special tokens (<|im_start|> ...) into those tokens.
    #[arg(long = "no-parse-special")]
    no_parse_special: bool,
    /// Process escapes (\n, \r, \t, \', \", \\, \xNN) in the prompt (default).
    #[arg(short = 'e', long = "escape", overrides_with = "no_escape")]
    escape: bool,
    /// Take the prompt literally.
    #[arg(long = "no-escape")]
    no_escape: bool,
    /// Print the number of tokens at the end.
    #[arg(long = "show-count")]
    show_count: bool,
    /// Accepted for compatibility: this tool logs nothing but errors.
    #[arg(long = "log-disable")]
    log_disable: bool,
}

fn main() {
    let args = match Args::try_parse_from(normalized_args()) {
        Ok(args) => args,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            let _ = e.print();
            std::process::exit(0);
        }
        Err(e) if e.kind() == clap::error::ErrorKind::UnknownArgument => {
            let arg = e.get(clap::error::ContextKind::InvalidArg).map(|v| v.to_string()).unwrap_or_default();
            eprintln!("error: invalid argument: {arg}");
            std::process::exit(1);
        }
        Err(e) => {
            // clap's first line names the problem; its usage notes are left out to keep one line.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments").trim();
            eprintln!("{first}");
            std::process::exit(1);
        }
    };
    if let Err(e) = run(&args) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// llama.cpp reads `--show_count` as `--show-count`: underscores in long flag names are dashes.
fn normalized_args() -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::new();
    let mut takes_value = false;
    for (i, arg) in std::env::args_os().enumerate() {
        let text = arg.to_string_lossy();
        if i > 0 && !takes_value && text.starts_with("--") && !text.contains('=') {
            out.push(text.replace('_', "-").into());
        } else {
            out.push(arg.clone());
        }
        takes_value = i > 0
            && !takes_value
            && matches!(text.as_ref(), "-m" | "--model" | "-p" | "--prompt" | "-f" | "--file");
    }
    out
}

fn run(args: &Args) -> Result<()> {
    let model = args.model.as_ref().ok_or_else(|| anyhow!("--model is required"))?;
    let escape = !args.no_escape;
    let prompt_arg = args.prompt.as_ref().map(|p| os_bytes(p)).unwrap_or_default();
    if !args.stdin && args.file.is_none() && prompt_arg.is_empty() {
        bail!("must specify one of: --stdin, --file or --prompt");
    }

    let mut prompt = Vec::new();
    if !args.stdin {
        prompt = match &args.file {
            Some(path) => std::fs::read(path)
                .with_context(|| format!("could not open file '{}' for reading", path.display()))?,
            None => prompt_arg,
        };
        if escape {
            prompt = process_escapes(&prompt);
        }
    }

    let file = GgufFile::open(model)
        .with_context(|| format!("could not load model from file '{}'", model.display()))?;
    let tokenizer = Tokenizer::from_gguf(&file)
        .with_context(|| format!("could not load model from file '{}'", model.display()))?;

    if args.stdin {
        std::io::stdin().read_to_end(&mut prompt).context("could not read the entire standard input")?;
        if escape {
            prompt = process_escapes(&prompt);
        }
    }

    let add_bos = tokenizer.add_bos() && !args.no_bos;
    let tokens = tokenizer.encode_bytes(&prompt, add_bos, !args.no_parse_special);

    let mut out = Vec::new();
    if args.ids {
        let list: Vec<String> = tokens.iter().map(|t| t.to_string()).collect();
        writeln!(out, "[{}]", list.join(", "))?;
    } else {
        for &id in &tokens {
            let piece = tokenizer.token_to_piece(id, true);
            // llama-tokenize prints the piece as a C string: it ends at the first NUL byte.
            let visible = piece.split(|&b| b == 0).next().unwrap_or_default();
            write!(out, "{id:6} -> '")?;
            out.extend_from_slice(visible);
            out.extend_from_slice(b"'\n");
        }
    }
    if args.show_count {
        writeln!(out, "Total number of tokens: {}", tokens.len())?;
    }
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth reporting.
    match stdout.write_all(&out).and_then(|_| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

#[cfg(unix)]
fn os_bytes(s: &std::ffi::OsStr) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    s.as_bytes().to_vec()
}

#[cfg(not(unix))]
fn os_bytes(s: &std::ffi::OsStr) -> Vec<u8> {
    s.to_string_lossy().into_owned().into_bytes()
}

/// llama.cpp's escape processing: `\n \r \t \' \" \\` and `\xNN`; any other backslash pair is kept
/// as is. `\x` takes the next two characters as `strtol(.., 16)` reads them, when both are consumed.
fn process_escapes(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] != b'\\' || i + 1 >= input.len() {
            out.push(input[i]);
            i += 1;
            continue;
        }
        i += 1;
        let c = input[i];
        match c {
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'\'' | b'"' | b'\\' => out.push(c),
            b'x' if i + 2 < input.len() && hex_pair(input[i + 1], input[i + 2]).is_some() => {
                out.push(hex_pair(input[i + 1], input[i + 2]).unwrap_or_default());
                i += 2;
            }
            _ => out.extend_from_slice(&[b'\\', c]),
        }
        i += 1;
    }
    out
}

/// `strtol` over exactly two characters, base 16, succeeding only if it reads both: two hex digits,
/// or a blank or sign followed by one digit.
fn hex_pair(a: u8, b: u8) -> Option<u8> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as i32);
    let value = match (digit(a), digit(b)) {
        (Some(hi), Some(lo)) => hi * 16 + lo,
        (None, Some(d)) if matches!(a, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b'+') => d,
        (None, Some(d)) if a == b'-' => -d,
        _ => return None,
    };
    Some(value as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_llama_cpp() {
        assert_eq!(process_escapes(br"a\nb\tc\\d\'e"), b"a\nb\tc\\d'e");
        assert_eq!(process_escapes(br"\x41\x4g\q"), b"A\\x4g\\q");
        assert_eq!(process_escapes(br"end\"), b"end\\");
        assert_eq!(process_escapes(br"\x-1"), [0xFF]);
    }
}
