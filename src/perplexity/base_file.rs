//! llama.cpp's KL-divergence base file (`--kl-divergence-base`), all little-endian:
//! `"_logits_"`, `u32 n_ctx`, `i32 n_vocab`, `i32 n_chunk`, `i32 tokens[n_chunk·n_ctx]` (the text's
//! tokens, before any BOS substitution), then for every chunk `n_scored(n_ctx)` rows of
//! `row_len(n_vocab)` u16 (see [`super::logprobs`]).

use std::io::{Read, Write};

use super::logprobs::row_len;
use super::{n_scored, PerplexityError};
use crate::TokenId;

const MAGIC: &[u8; 8] = b"_logits_";

/// The part of a base file before the rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseHeader {
    pub n_ctx: usize,
    pub n_vocab: usize,
    pub n_chunk: usize,
    /// `[n_chunk·n_ctx]`
    pub tokens: Vec<TokenId>,
}

impl BaseHeader {
    /// u16 values of one chunk's rows.
    pub fn chunk_len(&self) -> usize {
        n_scored(self.n_ctx) * row_len(self.n_vocab)
    }
}

fn invalid(msg: String) -> PerplexityError {
    PerplexityError::Invalid(msg)
}

fn io_err(path: &str) -> impl Fn(std::io::Error) -> PerplexityError + '_ {
    move |source| PerplexityError::Io { path: path.to_string(), source }
}

/// Writes a base file chunk by chunk.
pub struct BaseWriter<W: Write> {
    out: W,
    path: String,
    chunk_len: usize,
}

impl<W: Write> BaseWriter<W> {
    /// Write the header; `tokens` must hold at least `n_chunk·n_ctx` tokens.
    pub fn new(mut out: W, path: &str, header: &BaseHeader) -> Result<Self, PerplexityError> {
        let n_tokens = header.n_chunk * header.n_ctx;
        let too_big = |what: &str| invalid(format!("{path}: {what} does not fit the file format"));
        let n_ctx = u32::try_from(header.n_ctx).map_err(|_| too_big("n_ctx"))?;
        let n_vocab = i32::try_from(header.n_vocab).map_err(|_| too_big("n_vocab"))?;
        let n_chunk = i32::try_from(header.n_chunk).map_err(|_| too_big("n_chunk"))?;
        let tokens = header.tokens.get(..n_tokens).ok_or_else(|| too_big("the token count"))?;
        let mut bytes = Vec::with_capacity(20 + 4 * n_tokens);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&n_ctx.to_le_bytes());
        bytes.extend_from_slice(&n_vocab.to_le_bytes());
        bytes.extend_from_slice(&n_chunk.to_le_bytes());
        for &t in tokens {
            bytes.extend_from_slice(&i32::try_from(t).map_err(|_| too_big("a token id"))?.to_le_bytes());
        }
        out.write_all(&bytes).map_err(io_err(path))?;
        Ok(BaseWriter { out, path: path.to_string(), chunk_len: header.chunk_len() })
    }

    /// Append one chunk's rows (`[n_scored][row_len]`).
    pub fn write_chunk(&mut self, rows: &[u16]) -> Result<(), PerplexityError> {
        if rows.len() != self.chunk_len {
            return Err(invalid(format!("chunk of {} values, expected {}", rows.len(), self.chunk_len)));
        }
        let bytes: Vec<u8> = rows.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.out.write_all(&bytes).map_err(io_err(&self.path))
    }

    pub fn finish(mut self) -> Result<W, PerplexityError> {
        self.out.flush().map_err(io_err(&self.path))?;
        Ok(self.out)
    }
}

/// Reads a base file chunk by chunk.
pub struct BaseReader<R: Read> {
    input: R,
    path: String,
    pub header: BaseHeader,
}

fn read_array<const N: usize>(
    input: &mut impl Read,
    path: &str,
    what: &str,
) -> Result<[u8; N], PerplexityError> {
    let mut buf = [0u8; N];
    input.read_exact(&mut buf).map_err(|e| invalid(format!("{path}: failed reading {what}: {e}")))?;
    Ok(buf)
}

impl<R: Read> BaseReader<R> {
    /// Read and check the header; `n_vocab` of the model must match the file's.
    pub fn new(mut input: R, path: &str) -> Result<Self, PerplexityError> {
        let mut magic = [0u8; 8];
        if input.read_exact(&mut magic).is_err() || &magic != MAGIC {
            return Err(PerplexityError::NotLogProbs(path.to_string()));
        }
        let n_ctx = u32::from_le_bytes(read_array(&mut input, path, "n_ctx")?);
        let n_vocab = i32::from_le_bytes(read_array(&mut input, path, "n_vocab")?);
        let n_chunk = i32::from_le_bytes(read_array(&mut input, path, "n_chunk")?);
        if n_ctx < 3 || n_vocab <= 0 || n_chunk < 0 {
            return Err(invalid(format!(
                "{path}: bad header (n_ctx {n_ctx}, n_vocab {n_vocab}, n_chunk {n_chunk})"
            )));
        }
        let (n_ctx, n_vocab, n_chunk) = (n_ctx as usize, n_vocab as usize, n_chunk as usize);
        let n_tokens = n_ctx
            .checked_mul(n_chunk)
            .filter(|n| n.checked_mul(4).is_some())
            .ok_or_else(|| invalid(format!("{path}: bad header (n_ctx {n_ctx}, n_chunk {n_chunk})")))?;
        let mut bytes = Vec::new();
        let read = (&mut input).take(4 * n_tokens as u64).read_to_end(&mut bytes).map_err(io_err(path))?;
        if read != 4 * n_tokens {
            return Err(invalid(format!("{path}: failed reading evaluation tokens")));
        }
        let mut tokens = Vec::with_capacity(n_tokens);
        for b in bytes.chunks_exact(4) {
            let t = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let id = TokenId::try_from(t).ok().filter(|&id| (id as usize) < n_vocab).ok_or_else(|| {
                invalid(format!("{path}: token id {t} is out of range (n_vocab {n_vocab})"))
            })?;
            tokens.push(id);
        }
        Ok(BaseReader {
            input,
            path: path.to_string(),
            header: BaseHeader { n_ctx, n_vocab, n_chunk, tokens },
        })
    }

    /// Read the rows of the next chunk into `rows` (`[n_scored][row_len]`); `chunk` (0-based) is
    /// only for the message.
    pub fn read_chunk(&mut self, chunk: usize, rows: &mut Vec<u16>) -> Result<(), PerplexityError> {
        let n = self.header.chunk_len();
        let mut bytes = vec![0u8; 2 * n];
        self.input.read_exact(&mut bytes).map_err(|e| {
            invalid(format!("{}: failed reading log-probs for chunk {chunk}: {e}", self.path))
        })?;
        rows.clear();
        rows.extend(bytes.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_rows_round_trip_with_the_documented_layout() {
        let header = BaseHeader { n_ctx: 4, n_vocab: 3, n_chunk: 2, tokens: vec![1, 2, 0, 1, 2, 2, 1, 0, 9] };
        let mut w = BaseWriter::new(Vec::new(), "mem", &header).unwrap();
        // n_scored(4) = 1 row of row_len(3) = 8 values per chunk.
        let rows: Vec<u16> = (0..8).map(|i| 1000 + i).collect();
        w.write_chunk(&rows).unwrap();
        w.write_chunk(&rows).unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(&bytes[..8], b"_logits_");
        assert_eq!(&bytes[8..20], &[4, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(bytes.len(), 20 + 8 * 4 + 2 * 2 * 8);
        assert_eq!(&bytes[52..54], &[0xe8, 0x03]);

        let mut r = BaseReader::new(bytes.as_slice(), "mem").unwrap();
        assert_eq!(r.header.tokens, header.tokens[..8]);
        let mut got = Vec::new();
        r.read_chunk(0, &mut got).unwrap();
        assert_eq!(got, rows);
        r.read_chunk(1, &mut got).unwrap();
        let err = r.read_chunk(2, &mut got).unwrap_err().to_string();
        assert!(err.contains("failed reading log-probs for chunk 2"), "{err}");
    }

    #[test]
    fn rejects_other_files_and_bad_headers() {
        let e = BaseReader::new(&b"GGUF...."[..], "x.gguf").err().unwrap();
        assert_eq!(e.to_string(), "x.gguf does not look like a file containing log-probabilities");
        let mut bytes = b"_logits_".to_vec();
        bytes.extend_from_slice(&[8, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0]);
        bytes.extend_from_slice(&[7, 0, 0, 0]);
        let e = BaseReader::new(bytes.as_slice(), "short").err().unwrap();
        assert_eq!(e.to_string(), "short: failed reading evaluation tokens");
        bytes.extend_from_slice(&[0; 28]);
        let e = BaseReader::new(bytes.as_slice(), "t").err().unwrap();
        assert!(e.to_string().contains("token id 7 is out of range"), "{e}");
    }
}
