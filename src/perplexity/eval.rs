//! Evaluating one chunk through the public [`Session`] API: the context half without logits, the
//! scored half with all of them.

use crate::exec::Session;
use crate::model::{Logits, ModelError};
use crate::TokenId;

use super::n_scored;

/// How a text is cut into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkPlan {
    pub n_ctx: usize,
    pub n_chunk: usize,
    /// Replaces the first token of every chunk when the vocabulary adds a BOS.
    pub bos: Option<TokenId>,
    /// Most tokens given to one decode call.
    pub n_batch: usize,
}

impl ChunkPlan {
    /// Tokens `[n_ctx]` of chunk `i` as evaluated (first one replaced by BOS if any).
    pub fn chunk_tokens(&self, tokens: &[TokenId], i: usize) -> Vec<TokenId> {
        let mut chunk = tokens[i * self.n_ctx..(i + 1) * self.n_ctx].to_vec();
        if let Some(bos) = self.bos {
            chunk[0] = bos;
        }
        chunk
    }
}

/// Logits `[n_scored(n_ctx)][n_vocab]` at positions `n_ctx/2 ..= n_ctx−2` of `chunk` (`[n_ctx]`),
/// evaluated from an empty cache. The last token is never decoded: nothing in the chunk follows it.
pub fn scored_logits(
    session: &mut Session,
    chunk: &[TokenId],
    n_batch: usize,
) -> Result<Vec<f32>, ModelError> {
    let n_ctx = chunk.len();
    let first = n_ctx / 2;
    let n_batch = n_batch.max(1);
    session.clear();
    for piece in chunk[..first].chunks(n_batch) {
        session.decode(piece, Logits::Last)?;
    }
    let mut logits = Vec::new();
    for piece in chunk[first..first + n_scored(n_ctx)].chunks(n_batch) {
        logits.extend(session.decode(piece, Logits::All)?);
    }
    Ok(logits)
}
