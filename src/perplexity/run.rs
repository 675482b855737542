//! The two measurement loops over chunks: plain perplexity (optionally writing a base file) and
//! the KL-divergence comparison against a base file. Printing is left to the caller through the
//! per-chunk callbacks.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::base_file::{BaseReader, BaseWriter};
use super::eval::{scored_logits, ChunkPlan};
use super::logprobs::{accumulate, compare_row, nll, quantize_row, row_len};
use super::stats::KldSums;
use super::{n_scored, PerplexityError};
use crate::exec::Session;
use crate::TokenId;

/// Negative log-likelihood sums of the perplexity pass.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NllSums {
    pub sum: f64,
    pub sum2: f64,
    pub count: usize,
}

impl NllSums {
    /// exp(mean NLL).
    pub fn ppl(&self) -> f64 {
        (self.sum / self.count as f64).exp()
    }

    /// PPL and its standard error `ppl·sqrt((E[nll²] − E[nll]²)/(n − 1))`; `None` when the
    /// variance is not positive.
    pub fn estimate(&self) -> Option<(f64, f64)> {
        let n = self.count as f64;
        let mean = self.sum / n;
        let var = self.sum2 / n - mean * mean;
        (var > 0.0).then(|| {
            let ppl = mean.exp();
            (ppl, ppl * (var / (n - 1.0)).sqrt())
        })
    }
}

/// Progress of a loop: which chunk just finished and how long its evaluation took.
#[derive(Debug, Clone, Copy)]
pub struct ChunkDone {
    /// 0-based.
    pub index: usize,
    pub eval_time: Duration,
    pub n_decoded: usize,
}

fn check_plan(tokens: &[TokenId], plan: &ChunkPlan, n_vocab: usize) -> Result<(), PerplexityError> {
    if plan.n_ctx < 3 {
        return Err(PerplexityError::Invalid(format!(
            "context size {} is too small (at least 3)",
            plan.n_ctx
        )));
    }
    if tokens.len() < plan.n_ctx * plan.n_chunk {
        return Err(PerplexityError::Invalid(format!(
            "{} tokens do not fill {} chunks of {}",
            tokens.len(),
            plan.n_chunk,
            plan.n_ctx
        )));
    }
    if let Some(bos) = plan.bos.filter(|&b| b as usize >= n_vocab) {
        return Err(PerplexityError::Invalid(format!("BOS token {bos} is out of range (n_vocab {n_vocab})")));
    }
    Ok(())
}

/// Evaluate `plan.n_chunk` chunks of `tokens`, scoring the second half of each. With `base`, each
/// chunk's rows are also encoded and written (and the NLL is the encoder's, as llama.cpp does).
pub fn perplexity<W: Write>(
    session: &mut Session,
    n_vocab: usize,
    tokens: &[TokenId],
    plan: &ChunkPlan,
    mut base: Option<&mut BaseWriter<W>>,
    mut on_chunk: impl FnMut(ChunkDone, &NllSums),
) -> Result<NllSums, PerplexityError> {
    check_plan(tokens, plan, n_vocab)?;
    let first = plan.n_ctx / 2;
    let stride = row_len(n_vocab);
    let mut rows = vec![0u16; if base.is_some() { n_scored(plan.n_ctx) * stride } else { 0 }];
    let mut sums = NllSums::default();
    for i in 0..plan.n_chunk {
        let chunk = plan.chunk_tokens(tokens, i);
        let start = Instant::now();
        let logits = scored_logits(session, &chunk, plan.n_batch)?;
        let eval_time = start.elapsed();
        let next = &chunk[first + 1..];
        let values: Vec<f64> = match base.as_deref_mut() {
            Some(writer) => {
                let v = rows
                    .par_chunks_mut(stride)
                    .zip(logits.par_chunks(n_vocab))
                    .zip(next.par_iter())
                    .map(|((row, l), &t)| quantize_row(l, t as usize, row))
                    .collect();
                writer.write_chunk(&rows)?;
                v
            }
            None => {
                logits.par_chunks(n_vocab).zip(next.par_iter()).map(|(l, &t)| nll(l, t as usize)).collect()
            }
        };
        for v in values {
            sums.sum += v;
            sums.sum2 += v * v;
            sums.count += 1;
        }
        on_chunk(ChunkDone { index: i, eval_time, n_decoded: chunk.len() - 1 }, &sums);
    }
    Ok(sums)
}

/// Result of the KL-divergence loop: the sums and one value per scored token.
#[derive(Debug, Clone, Default)]
pub struct KldOutcome {
    pub sums: KldSums,
    pub kld_values: Vec<f32>,
    pub p_diff_values: Vec<f32>,
}

/// Re-evaluate the chunks stored in `reader` and compare each scored row with the stored one.
pub fn kl_divergence<R: Read>(
    session: &mut Session,
    n_vocab: usize,
    reader: &mut BaseReader<R>,
    bos: Option<TokenId>,
    n_batch: usize,
    mut on_chunk: impl FnMut(ChunkDone, &KldSums),
) -> Result<KldOutcome, PerplexityError> {
    let header = reader.header.clone();
    if header.n_vocab != n_vocab {
        return Err(PerplexityError::Invalid(format!(
            "inconsistent vocabulary ({} vs {n_vocab})",
            header.n_vocab
        )));
    }
    let plan = ChunkPlan { n_ctx: header.n_ctx, n_chunk: header.n_chunk, bos, n_batch };
    check_plan(&header.tokens, &plan, n_vocab)?;
    let first = plan.n_ctx / 2;
    let stride = row_len(n_vocab);
    let mut out = KldOutcome::default();
    let mut rows = Vec::new();
    for i in 0..plan.n_chunk {
        let chunk = plan.chunk_tokens(&header.tokens, i);
        let start = Instant::now();
        let logits = scored_logits(session, &chunk, n_batch)?;
        let eval_time = start.elapsed();
        reader.read_chunk(i, &mut rows)?;
        let next = &chunk[first + 1..];
        let compared: Vec<_> = logits
            .par_chunks(n_vocab)
            .zip(rows.par_chunks(stride))
            .zip(next.par_iter())
            .map(|((l, row), &t)| compare_row(l, row, t as usize))
            .collect();
        for c in &compared {
            accumulate(&mut out.sums, c);
            out.kld_values.push(c.kld as f32);
            out.p_diff_values.push(c.p_diff);
        }
        on_chunk(ChunkDone { index: i, eval_time, n_decoded: chunk.len() - 1 }, &out.sums);
    }
    Ok(out)
}
