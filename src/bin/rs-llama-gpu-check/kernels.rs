//! Every kernel of cuda/ against its f64 reference, on fresh random inputs; outputs are poisoned
//! with NaN first so that an element the kernel never wrote fails the check.

use crate::Checks;
use half::{bf16, f16};
use rs_llama::gpu::reference::{self as naive, rel_error, Rng};
use rs_llama::gpu::{DeviceBuffer, EmbeddingTable, Gpu, GpuError, RopeConfig};

type R = Result<(), GpuError>;

pub fn poisoned(gpu: &Gpu, len: usize) -> Result<DeviceBuffer<f32>, GpuError> {
    gpu.upload(&vec![f32::NAN; len])
}

fn round_f16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| f16::from_f32(x).to_f32()).collect()
}

pub fn run_all(gpu: &Gpu, rng: &mut Rng, c: &mut Checks) {
    let r = rmsnorm(gpu, rng, c);
    c.outcome("rmsnorm", r);
    for neox in [false, true] {
        let r = rope(gpu, rng, c, neox);
        c.outcome("rope", r);
    }
    let r = elementwise(gpu, rng, c);
    c.outcome("softmax/swiglu/add", r);
    let r = embedding(gpu, rng, c);
    c.outcome("embedding", r);
    // (n_head, n_kv_head, head_dim, pos0, n_tokens): prefill, chunked prefill, decode over many
    // chunks of keys, GQA, MHA, a head_dim that is not a power of two.
    for (nh, nkv, hd, pos0, nt) in [
        (8, 2, 64, 0, 37),
        (8, 8, 128, 100, 20),
        (32, 8, 128, 700, 1),
        (4, 1, 256, 1500, 1),
        (9, 3, 64, 0, 300),
        (6, 2, 80, 33, 5),
    ] {
        let r = attention(gpu, rng, c, nh, nkv, hd, pos0, nt);
        c.outcome("attention", r);
    }
    let r = moe(gpu, rng, c);
    c.outcome("moe", r);
}

fn rmsnorm(gpu: &Gpu, rng: &mut Rng, c: &mut Checks) -> R {
    for (rows, n) in [(1, 4096), (7, 576), (64, 5120)] {
        let x = rng.vec(rows * n, 3.0);
        let w = rng.vec(n, 1.5);
        let (xd, wd) = (gpu.upload(&x)?, gpu.upload(&w)?);
        let mut yd = poisoned(gpu, x.len())?;
        gpu.rmsnorm(&mut yd, &xd, &wd, 1e-5)?;
        c.error(
            &format!("rmsnorm {rows}x{n}"),
            rel_error(&gpu.download(&yd)?, &naive::rmsnorm(&x, &w, 1e-5)),
            1e-5,
        );
    }
    Ok(())
}

fn rope(gpu: &Gpu, rng: &mut Rng, c: &mut Checks, neox: bool) -> R {
    let (n_head, head_dim, n_rot, n_tokens) = (8, 128, 96, 19);
    let x = rng.vec(n_tokens * n_head * head_dim, 2.0);
    let pos: Vec<i32> = (0..n_tokens).map(|_| rng.below(2048) as i32).collect();
    // The NeoX run also divides the angles by per-pair factors (LLaMA-3's rope_freqs).
    let factors: Vec<f32> = (0..n_rot / 2).map(|_| 1.0 + 4.0 * rng.uniform().abs()).collect();
    let factors_dev = gpu.upload(&factors)?;
    let mut xd = gpu.upload(&x)?;
    let pd = gpu.upload(&pos)?;
    let cfg = RopeConfig {
        n_rot,
        freq_base: 10000.0,
        freq_scale: 0.5,
        neox,
        freq_factors: neox.then_some(&factors_dev),
    };
    gpu.rope(&mut xd, &pd, n_head, head_dim, &cfg)?;
    let r = naive::Rope {
        n_rot,
        freq_base: 10000.0,
        freq_scale: 0.5,
        neox,
        freq_factors: neox.then_some(&factors[..]),
    };
    let want = naive::rope(&x, &pos, n_head, head_dim, &r);
    // f32 angles of positions up to 2048 carry ~1e-4 rad of rounding.
    let style = if neox { "neox + freq factors" } else { "normal" };
    let name = format!("rope {style} {n_tokens}x{n_head}x{head_dim} n_rot {n_rot}");
    c.error(&name, rel_error(&gpu.download(&xd)?, &want), 1e-3);
    Ok(())
}

fn elementwise(gpu: &Gpu, rng: &mut Rng, c: &mut Checks) -> R {
    for (rows, n) in [(5, 8), (3, 49152), (16, 1000)] {
        let x = rng.vec(rows * n, 8.0);
        let xd = gpu.upload(&x)?;
        let mut yd = poisoned(gpu, x.len())?;
        gpu.softmax(&mut yd, &xd, n, 0.7)?;
        c.error(
            &format!("softmax {rows}x{n}"),
            rel_error(&gpu.download(&yd)?, &naive::softmax(&x, n, 0.7)),
            1e-5,
        );
    }
    let n = 3 * 14336 + 17;
    let (g, u) = (rng.vec(n, 6.0), rng.vec(n, 2.0));
    let (gd, ud) = (gpu.upload(&g)?, gpu.upload(&u)?);
    let mut yd = poisoned(gpu, n)?;
    gpu.swiglu(&mut yd, &gd, &ud)?;
    c.error(&format!("swiglu {n}"), rel_error(&gpu.download(&yd)?, &naive::swiglu(&g, &u)), 1e-5);
    let mut yd = poisoned(gpu, n)?;
    gpu.add(&mut yd, &gd, &ud)?;
    c.error(&format!("add {n}"), rel_error(&gpu.download(&yd)?, &naive::add(&g, &u)), 1e-7);
    let mut acc = gpu.upload(&g)?;
    gpu.add_assign(&mut acc, &ud)?;
    c.error(&format!("add_assign {n}"), rel_error(&gpu.download(&acc)?, &naive::add(&g, &u)), 1e-7);
    Ok(())
}

fn embedding(gpu: &Gpu, rng: &mut Rng, c: &mut Checks) -> R {
    let (n_vocab, n_embd) = (1000, 576);
    let table = rng.vec(n_vocab * n_embd, 1.0);
    let ids: Vec<u32> = (0..23).map(|_| rng.below(n_vocab) as u32).collect();
    let mut ids_dev = gpu.alloc::<u32>(64)?;
    let f16_words: Vec<u16> = table.iter().map(|&v| f16::from_f32(v).to_bits()).collect();
    let bf16_words: Vec<u16> = table.iter().map(|&v| bf16::from_f32(v).to_bits()).collect();
    let tables = [
        (
            "f16",
            EmbeddingTable::F16(gpu.upload(&f16_words)?),
            f16_words.iter().map(|&b| f16::from_bits(b).to_f32()).collect::<Vec<_>>(),
        ),
        (
            "bf16",
            EmbeddingTable::Bf16(gpu.upload(&bf16_words)?),
            bf16_words.iter().map(|&b| bf16::from_bits(b).to_f32()).collect(),
        ),
        ("f32", EmbeddingTable::F32(gpu.upload(&table)?), table.clone()),
    ];
    for (name, t, widened) in &tables {
        let mut yd = poisoned(gpu, ids.len() * n_embd)?;
        gpu.embed(&mut yd, t, n_embd, &ids, &mut ids_dev)?;
        let got = gpu.download(&yd)?;
        let want = naive::get_rows(widened, &ids, n_embd);
        let differ = got.iter().zip(&want).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        c.exact(&format!("get_rows {name} {}x{n_embd}", ids.len()), differ, want.len());
    }
    let bad = gpu.embed(&mut poisoned(gpu, n_embd)?, &tables[0].1, n_embd, &[n_vocab as u32], &mut ids_dev);
    c.exact("get_rows refuses an id past n_vocab", usize::from(bad.is_ok()), 1);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn attention(
    gpu: &Gpu,
    rng: &mut Rng,
    c: &mut Checks,
    n_head: usize,
    n_kv: usize,
    hd: usize,
    pos0: usize,
    nt: usize,
) -> R {
    let row = n_kv * hd;
    let n_ctx = pos0 + nt + 3;
    // The cache already holds pos0 rows (written by kv_store too), then the new tokens' rows.
    let k_all = rng.vec((pos0 + nt) * row, 1.0);
    let v_all = rng.vec((pos0 + nt) * row, 1.0);
    let q = rng.vec(nt * n_head * hd, 1.0);
    let mut kc = gpu.alloc::<u16>(n_ctx * row)?;
    let mut vc = gpu.alloc::<u16>(n_ctx * row)?;
    for (cache, all) in [(&mut kc, &k_all), (&mut vc, &v_all)] {
        if pos0 > 0 {
            gpu.kv_store(cache, &gpu.upload(&all[..pos0 * row])?, row, 0)?;
        }
        gpu.kv_store(cache, &gpu.upload(&all[pos0 * row..])?, row, pos0)?;
    }
    let stored = gpu.download(&kc)?;
    let differ = k_all.iter().zip(&stored).filter(|(x, s)| f16::from_f32(**x).to_bits() != **s).count();
    c.exact(&format!("kv_store f16 {} rows of {row}", pos0 + nt), differ, k_all.len());
    let qd = gpu.upload(&q)?;
    let mut out = poisoned(gpu, q.len())?;
    let scale = 1.0 / (hd as f32).sqrt();
    gpu.attention(&mut out, &qd, &kc, &vc, n_head, n_kv, hd, pos0, scale)?;
    let want = naive::attention(&q, &round_f16(&k_all), &round_f16(&v_all), n_head, n_kv, hd, pos0, scale);
    let name = format!(
        "attention {}  heads {n_head}/{n_kv} hd {hd} pos0 {pos0} tokens {nt}",
        if nt == 1 { "decode " } else { "prefill" }
    );
    c.error(&name, rel_error(&gpu.download(&out)?, &want), 1e-5);
    Ok(())
}

fn moe(gpu: &Gpu, rng: &mut Rng, c: &mut Checks) -> R {
    let (n_tokens, n_expert, k, n_embd) = (29, 8, 2, 4096);
    let logits = rng.vec(n_tokens * n_expert, 4.0);
    let ld = gpu.upload(&logits)?;
    let mut ids = gpu.alloc::<i32>(n_tokens * k)?;
    let mut w = poisoned(gpu, n_tokens * k)?;
    for renorm in [true, false] {
        gpu.moe_topk(&mut ids, &mut w, &ld, n_expert, k, renorm)?;
        let (want_ids, want_w) = naive::moe_topk(&logits, n_expert, k, renorm);
        let got_ids = gpu.download(&ids)?;
        let differ = got_ids.iter().zip(&want_ids).filter(|(a, b)| a != b).count();
        c.exact(
            &format!("moe_topk ids {n_tokens} tokens top {k} of {n_expert} renorm {renorm}"),
            differ,
            want_ids.len(),
        );
        c.error(&format!("moe_topk weights renorm {renorm}"), rel_error(&gpu.download(&w)?, &want_w), 1e-6);
    }
    // Route every (token, choice) through its expert: gather the expert's rows, "compute" them
    // (here: a copy scaled on the host side is not needed; the rows themselves are moved), then
    // scatter back to the token's slots and take the weighted sum.
    let x = rng.vec(n_tokens * n_embd, 1.0);
    let xd = gpu.upload(&x)?;
    let ids_h = gpu.download(&ids)?;
    let mut buf = poisoned(gpu, n_tokens * k * n_embd)?;
    let mut idx_dev = gpu.alloc::<i32>(n_tokens * k)?;
    for e in 0..n_expert as i32 {
        let slots: Vec<i32> = (0..ids_h.len() as i32).filter(|&s| ids_h[s as usize] == e).collect();
        if slots.is_empty() {
            continue;
        }
        let rows: Vec<i32> = slots.iter().map(|&s| s / k as i32).collect();
        let mut xs = poisoned(gpu, rows.len() * n_embd)?;
        gpu.moe_gather(&mut xs, &xd, &rows, &mut idx_dev, n_embd)?;
        let want: Vec<f32> =
            rows.iter().flat_map(|&r| x[r as usize * n_embd..][..n_embd].iter().copied()).collect();
        let got = gpu.download(&xs)?;
        c.exact(
            &format!("moe_gather expert {e} ({} rows)", rows.len()),
            got.iter().zip(&want).filter(|(a, b)| a != b).count(),
            want.len(),
        );
        gpu.moe_scatter(&mut buf, &xs, &slots, &mut idx_dev, n_embd)?;
    }
    let buf_h = gpu.download(&buf)?;
    let want_buf: Vec<f32> =
        (0..n_tokens * k).flat_map(|s| x[s / k * n_embd..][..n_embd].iter().copied()).collect();
    c.exact(
        "moe_scatter fills every slot",
        buf_h.iter().zip(&want_buf).filter(|(a, b)| a != b).count(),
        want_buf.len(),
    );
    let mut out = poisoned(gpu, n_tokens * n_embd)?;
    gpu.moe_weighted_sum(&mut out, &buf, &w, k, n_embd)?;
    let want = naive::moe_weighted_sum(&buf_h, &gpu.download(&w)?, k, n_embd);
    c.error(
        &format!("moe_weighted_sum {n_tokens}x{k}x{n_embd}"),
        rel_error(&gpu.download(&out)?, &want),
        1e-6,
    );
    Ok(())
}
