//! The individual samplers of llama.cpp's chain, each a function over the candidate list. They keep
//! llama.cpp's f32 arithmetic, operation order and sort order, so that a seed picks the same token.

use super::rng::Mt19937;
use super::sort;
use crate::TokenId;
use std::collections::HashMap;

/// One candidate token (llama.cpp's `llama_token_data`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub id: TokenId,
    pub logit: f32,
    pub p: f32,
}

/// The candidate list a chain works on (llama.cpp's `llama_token_data_array`).
#[derive(Debug, Clone, Default)]
pub struct Candidates {
    pub data: Vec<Candidate>,
    /// Whether `data` is in descending logit order.
    pub sorted: bool,
    /// Index into `data` of the chosen token, set by the final stage.
    pub selected: Option<usize>,
}

impl Candidates {
    /// All tokens of a `[n_vocab]` logit row, in id order.
    pub fn from_logits(logits: &[f32]) -> Candidates {
        let data = logits
            .iter()
            .enumerate()
            .map(|(i, &logit)| Candidate { id: i as TokenId, logit, p: 0.0 })
            .collect();
        Candidates { data, sorted: false, selected: None }
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

fn logit_desc(a: &Candidate, b: &Candidate) -> bool {
    a.logit > b.logit
}

const N_BUCKETS: usize = 128;
const BUCKET_LOW: f32 = -10.0;
const BUCKET_HIGH: f32 = 10.0;

/// The `npartial` best candidates in descending order (plus possibly some trailing extras from the
/// last bucket): llama.cpp's bucketed partial sort for large `npartial`. Does not touch `cur`.
fn bucket_partial_sort(cur: &[Candidate], npartial: usize) -> Vec<Candidate> {
    let scale = N_BUCKETS as f32 / (BUCKET_HIGH - BUCKET_LOW);
    let offset = -BUCKET_LOW * scale;
    let bucket_of: Vec<usize> = cur
        .iter()
        .map(|c| ((scale * c.logit + offset) as i32).clamp(0, N_BUCKETS as i32 - 1) as usize)
        .collect();
    let mut histo = [0usize; N_BUCKETS];
    for &b in &bucket_of {
        histo[b] += 1;
    }
    // Lowest bucket still needed to hold npartial candidates.
    let mut have = 0;
    let mut lowest = 0;
    for b in (0..N_BUCKETS).rev() {
        have += histo[b];
        lowest = b;
        if have >= npartial {
            break;
        }
    }
    let mut start = [0usize; N_BUCKETS];
    let mut pos = 0;
    for b in (lowest..N_BUCKETS).rev() {
        start[b] = pos;
        pos += histo[b];
    }
    let fill = Candidate { id: 0, logit: 0.0, p: 0.0 };
    let mut res = vec![fill; have];
    for (c, &b) in cur.iter().zip(&bucket_of) {
        if b >= lowest {
            res[start[b]] = *c;
            start[b] += 1;
        }
    }
    let mut pos = 0;
    let mut done = 0;
    for b in ((lowest + 1)..N_BUCKETS).rev() {
        sort::sort(&mut res[pos..pos + histo[b]], &logit_desc);
        pos += histo[b];
        done += histo[b];
    }
    let rest = npartial.saturating_sub(done);
    sort::partial_sort(&mut res[pos..pos + histo[lowest]], rest, &logit_desc);
    res
}

/// Keep the best `npartial` candidates, sorted (llama.cpp's in-place partial sort).
fn partial_sort_inplace(cur: &mut Candidates, npartial: usize) {
    let npartial = npartial.min(cur.len());
    if npartial <= 128 {
        sort::partial_sort(&mut cur.data, npartial, &logit_desc);
    } else {
        let best = bucket_partial_sort(&cur.data, npartial);
        cur.data[..npartial].copy_from_slice(&best[..npartial]);
    }
    cur.data.truncate(npartial);
    cur.sorted = true;
}

/// Probabilities by softmax in f32, optionally sorting first.
pub fn softmax(cur: &mut Candidates, do_sort: bool) {
    if cur.is_empty() {
        return;
    }
    if do_sort && !cur.sorted {
        let n = cur.len();
        partial_sort_inplace(cur, n);
    }
    let max = if cur.sorted {
        cur.data[0].logit
    } else {
        cur.data.iter().fold(cur.data[0].logit, |m, c| m.max(c.logit))
    };
    let mut sum = 0.0f32;
    for c in cur.data.iter_mut() {
        c.p = (c.logit - max).exp();
        sum += c.p;
    }
    for c in cur.data.iter_mut() {
        c.p /= sum;
    }
}

/// Add biases to tokens (`-l`, `--ignore-eos`). Looks at index == id first, as llama.cpp does.
pub fn logit_bias(cur: &mut Candidates, biases: &[(TokenId, f32)]) {
    let mut to_search = Vec::new();
    for &(id, bias) in biases {
        match cur.data.get_mut(id as usize) {
            Some(c) if c.id == id => c.logit += bias,
            _ => to_search.push((id, bias)),
        }
    }
    if to_search.is_empty() {
        return;
    }
    for c in cur.data.iter_mut() {
        if let Some(&(_, bias)) = to_search.iter().find(|(id, _)| *id == c.id) {
            c.logit += bias;
        }
    }
}

/// Repetition / frequency / presence penalties over a window of the last `last_n` accepted tokens.
#[derive(Debug, Clone)]
pub struct Penalties {
    pub last_n: usize,
    pub repeat: f32,
    pub freq: f32,
    pub present: f32,
    window: std::collections::VecDeque<TokenId>,
    counts: HashMap<TokenId, u32>,
}

impl Penalties {
    pub fn new(last_n: usize, repeat: f32, freq: f32, present: f32) -> Penalties {
        Penalties { last_n, repeat, freq, present, window: Default::default(), counts: HashMap::new() }
    }

    pub fn is_disabled(&self) -> bool {
        self.last_n == 0 || (self.repeat == 1.0 && self.freq == 0.0 && self.present == 0.0)
    }

    pub fn accept(&mut self, id: TokenId) {
        if self.last_n == 0 {
            return;
        }
        *self.counts.entry(id).or_insert(0) += 1;
        if self.window.len() >= self.last_n {
            if let Some(old) = self.window.pop_front() {
                if let Some(n) = self.counts.get_mut(&old) {
                    *n -= 1;
                    if *n == 0 {
                        self.counts.remove(&old);
                    }
                }
            }
        }
        self.window.push_back(id);
    }

    /// Each distinct token in the window is penalised once; frequency scales with its count.
    pub fn apply(&self, cur: &mut Candidates) {
        if self.is_disabled() {
            return;
        }
        for c in cur.data.iter_mut() {
            let Some(&count) = self.counts.get(&c.id) else { continue };
            if c.logit <= 0.0 {
                c.logit *= self.repeat;
            } else {
                c.logit /= self.repeat;
            }
            let present = if count > 0 { 1.0f32 } else { 0.0 };
            c.logit -= count as f32 * self.freq + present * self.present;
        }
        cur.sorted = false;
    }

    pub fn reset(&mut self) {
        self.window.clear();
        self.counts.clear();
    }
}

/// Keep the `k` best (k <= 0: all).
pub fn top_k(cur: &mut Candidates, k: i32) {
    if k <= 0 {
        return;
    }
    let k = (k as usize).min(cur.len());
    if !cur.sorted {
        partial_sort_inplace(cur, k);
    }
    cur.data.truncate(k);
}

/// Keep the smallest prefix (by probability) whose mass reaches `p`, at least `min_keep` tokens.
pub fn top_p(cur: &mut Candidates, p: f32, min_keep: usize) {
    if p >= 1.0 || cur.is_empty() {
        return;
    }
    softmax(cur, false);
    let n = cur.len();
    // Unsorted and large: sort only a guess of the head (256), widen if the mass is not reached.
    let mut sorted_copy: Option<Vec<Candidate>> = None;
    let mut k = n;
    if !cur.sorted && n > 1024 {
        k = 256.min(n);
        sorted_copy = Some(bucket_partial_sort(&cur.data, k));
    } else if !cur.sorted {
        partial_sort_inplace(cur, n);
    }
    let mut cum = 0.0f32;
    let mut last = n;
    for i in 0..n {
        let pi = match &sorted_copy {
            Some(v) => v.get(i).map_or(0.0, |c| c.p),
            None => cur.data[i].p,
        };
        cum += pi;
        if cum >= p && i + 1 >= min_keep {
            last = i + 1;
            break;
        }
        if sorted_copy.is_some() && i == k - 1 {
            k = n;
            sorted_copy = Some(bucket_partial_sort(&cur.data, k));
        }
    }
    if let Some(v) = sorted_copy {
        cur.data.clear();
        cur.data.extend_from_slice(&v[..last.min(v.len())]);
        cur.sorted = true;
    }
    cur.data.truncate(last);
}

/// Keep tokens with probability at least `p` times the best one.
pub fn min_p(cur: &mut Candidates, p: f32, min_keep: usize) {
    if p <= 0.0 || cur.is_empty() {
        return;
    }
    if !cur.sorted {
        let max = cur.data.iter().fold(-f32::MAX, |m, c| m.max(c.logit));
        let min_logit = max + p.ln();
        let kept: Vec<Candidate> = cur.data.iter().filter(|c| c.logit >= min_logit).copied().collect();
        if !kept.is_empty() && kept.len() >= min_keep {
            cur.data = kept;
            return;
        }
        let n = cur.len();
        partial_sort_inplace(cur, n);
    }
    let min_logit = cur.data[0].logit + p.ln();
    let mut i = 1;
    while i < cur.len() {
        if cur.data[i].logit < min_logit && i >= min_keep {
            break;
        }
        i += 1;
    }
    cur.data.truncate(i);
}

/// Locally typical sampling: keep tokens whose surprise is closest to the entropy.
pub fn typical(cur: &mut Candidates, p: f32, min_keep: usize) {
    if p >= 1.0 || cur.is_empty() {
        return;
    }
    softmax(cur, true);
    let mut entropy = 0.0f32;
    for c in &cur.data {
        entropy += -c.p * c.p.ln();
    }
    let shifted: Vec<f32> = cur.data.iter().map(|c| (-c.p.ln() - entropy).abs()).collect();
    let mut order: Vec<usize> = (0..cur.len()).collect();
    sort::sort(&mut order, &|a: &usize, b: &usize| shifted[*a] < shifted[*b]);
    let mut cum = 0.0f32;
    let mut last = order.len();
    for (i, &idx) in order.iter().enumerate() {
        cum += cur.data[idx].p;
        if cum > p && (min_keep == 0 || i + 1 >= min_keep) {
            last = i + 1;
            break;
        }
    }
    cur.data = order[..last].iter().map(|&i| cur.data[i]).collect();
    cur.sorted = false;
}

/// Divide logits by `temp`; temp <= 0 keeps only the first maximum (all others become -inf).
pub fn temperature(cur: &mut Candidates, temp: f32) {
    if cur.is_empty() {
        return;
    }
    if temp <= 0.0 {
        let mut best = 0;
        let mut best_logit = cur.data[0].logit;
        for i in 1..cur.len() {
            if cur.data[i].logit > best_logit {
                cur.data[best].logit = f32::NEG_INFINITY;
                best = i;
                best_logit = cur.data[i].logit;
            } else {
                cur.data[i].logit = f32::NEG_INFINITY;
            }
        }
        return;
    }
    for c in cur.data.iter_mut() {
        c.logit /= temp;
    }
}

/// Temperature with optional entropy-driven range (`--dynatemp-range`, `--dynatemp-exp`).
pub fn temperature_ext(cur: &mut Candidates, temp: f32, delta: f32, exponent: f32) {
    if delta <= 0.0 {
        temperature(cur, temp);
        return;
    }
    let min_temp = (temp - delta).max(0.0);
    let max_temp = temp + delta;
    if cur.len() <= 1 {
        return;
    }
    let max_entropy = -(1.0f32 / cur.len() as f32).ln();
    softmax(cur, true);
    let mut entropy = 0.0f32;
    for c in &cur.data {
        if c.p > 0.0 {
            entropy -= c.p * c.p.ln();
        }
    }
    let normalized = entropy / max_entropy;
    let dyn_temp = min_temp + (max_temp - min_temp) * normalized.powf(exponent);
    temperature(cur, dyn_temp);
    let max = cur.data[0].logit as f64;
    let mut sum = 0.0f64;
    for c in cur.data.iter_mut() {
        let e = (c.logit as f64 - max).exp();
        c.p = e as f32;
        sum += e;
    }
    for c in cur.data.iter_mut() {
        c.p = (c.p as f64 / sum) as f32;
    }
}

/// Mask tokens more than `n` standard deviations below the best logit.
pub fn top_n_sigma(cur: &mut Candidates, n: f32) {
    if n <= 0.0 || cur.len() <= 1 {
        return;
    }
    let mut max = cur.data[0].logit;
    let mut sum = 0.0f32;
    let mut count = 0usize;
    for c in &cur.data {
        if c.logit != f32::NEG_INFINITY {
            max = max.max(c.logit);
            sum += c.logit;
            count += 1;
        }
    }
    let mean = if count > 0 { sum / count as f32 } else { 0.0 };
    let mut acc = 0.0f32;
    for c in &cur.data {
        if c.logit != f32::NEG_INFINITY {
            acc = (acc as f64 + ((c.logit - mean) as f64).powi(2)) as f32;
        }
    }
    let std = if count > 0 { (acc / count as f32).sqrt() } else { 0.0 };
    for c in cur.data.iter_mut() {
        if c.logit < max - n * std {
            c.logit = f32::NEG_INFINITY;
        }
    }
}

/// Exclude Top Choices: with chance `probability`, drop all but the least likely token above
/// `threshold`.
pub fn xtc(cur: &mut Candidates, probability: f32, threshold: f32, min_keep: usize, rng: &mut Mt19937) {
    if probability <= 0.0 || threshold > 0.5 || cur.len() < 2 {
        return;
    }
    if rng.canonical_f32() > probability {
        return;
    }
    softmax(cur, true);
    let mut pos_last = 0;
    for (i, c) in cur.data.iter().enumerate() {
        if c.p >= threshold {
            pos_last = i;
        } else {
            break;
        }
    }
    if cur.len() - pos_last >= min_keep && pos_last > 0 {
        cur.data.drain(..pos_last);
    }
}

/// Draw one token: softmax in f32 terms summed in f64, then the first index whose running sum
/// reaches `u · total`. Always consumes one draw, even with a single candidate.
pub fn dist(cur: &mut Candidates, rng: &mut Mt19937) {
    if cur.is_empty() {
        cur.selected = None;
        return;
    }
    cur.selected = Some(0);
    if cur.len() == 1 {
        rng.canonical_f64();
        cur.data[0].p = 1.0;
        return;
    }
    let max = if cur.sorted {
        cur.data[0].logit
    } else {
        cur.data.iter().fold(cur.data[0].logit, |m, c| m.max(c.logit))
    };
    let mut total = 0.0f64;
    for c in cur.data.iter_mut() {
        c.p = (c.logit - max).exp();
        total += c.p as f64;
    }
    let target = total * rng.canonical_f64();
    let mut running = 0.0f64;
    let mut found = None;
    for (i, c) in cur.data.iter_mut().enumerate() {
        if found.is_none() {
            running += c.p as f64;
            if running >= target {
                found = Some(i);
            }
        }
        c.p = (c.p as f64 / total) as f32;
    }
    cur.selected = Some(found.unwrap_or(cur.len() - 1));
}
