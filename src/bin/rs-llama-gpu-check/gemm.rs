//! The linear layers (gemv kernels up to 8 rows, cuBLAS with split activations above; plain,
//! grouped by expert, strided-batched) against an f64 product of the f32 activations and the
//! 16-bit weights; then the staging copies and the pool.

use crate::kernels::poisoned;
use crate::Checks;
use half::{bf16, f16};
use rs_llama::gpu::reference::{self as naive, rel_error, Rng};
use rs_llama::gpu::{ExpertGroup, Gpu, GpuError, Linear, Pool, Staging, WeightType};

type R = Result<(), GpuError>;

/// Round to the weight type: (raw words, their values widened back to f32).
pub fn to_words(v: &[f32], ty: WeightType) -> (Vec<u16>, Vec<f32>) {
    match ty {
        WeightType::F16 => v.iter().map(|&x| f16::from_f32(x)).map(|h| (h.to_bits(), h.to_f32())).unzip(),
        WeightType::Bf16 => v.iter().map(|&x| bf16::from_f32(x)).map(|h| (h.to_bits(), h.to_f32())).unzip(),
        WeightType::F32 => (Vec::new(), v.to_vec()),
    }
}

pub fn run_all(gpu: &Gpu, rng: &mut Rng, c: &mut Checks) {
    for ty in [WeightType::F16, WeightType::Bf16] {
        for (n_tokens, n_in, n_out) in [
            (1, 4096, 14336),
            (8, 4096, 1024),
            (9, 4096, 1024),
            (33, 576, 1536),
            (64, 2048, 2048),
            (3, 1000, 49152),
        ] {
            let r = linear(gpu, rng, c, ty, n_tokens, n_in, n_out);
            c.outcome("linear", r);
        }
        let r = grouped(gpu, rng, c, ty);
        c.outcome("linear_grouped", r);
        let r = batched(gpu, rng, c, ty);
        c.outcome("linear_batched", r);
    }
    // f32 weights (MoE routers are often kept in f32): no rounding of the activations.
    let r = linear_f32(gpu, rng, c, 29, 4096, 8);
    c.outcome("linear f32", r);
    let r = staging(gpu, rng, c);
    c.outcome("staging", r);
    let r = pool(gpu, c);
    c.outcome("pool", r);
}

fn linear(
    gpu: &Gpu,
    rng: &mut Rng,
    c: &mut Checks,
    ty: WeightType,
    n_tokens: usize,
    n_in: usize,
    n_out: usize,
) -> R {
    let x = rng.vec(n_tokens * n_in, 1.0);
    let (w_words, w_vals) = to_words(&rng.vec(n_out * n_in, 0.05), ty);
    let w = Linear::upload_words(gpu, ty, &w_words, n_in, n_out, 1)?;
    let xd = gpu.upload(&x)?;
    let mut y = poisoned(gpu, n_tokens * n_out)?;
    gpu.linear(&mut y, &xd, &w, 0, n_tokens)?;
    let want = naive::linear(&x, &w_vals, n_in);
    c.error(
        &format!("linear {ty:?} {n_tokens}x{n_in} -> {n_out}"),
        rel_error(&gpu.download(&y)?, &want),
        1e-4,
    );
    Ok(())
}

fn linear_f32(gpu: &Gpu, rng: &mut Rng, c: &mut Checks, n_tokens: usize, n_in: usize, n_out: usize) -> R {
    let x = rng.vec(n_tokens * n_in, 1.0);
    let w_vals = rng.vec(n_out * n_in, 0.05);
    let bytes: Vec<u8> = w_vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    let w = Linear::upload(gpu, WeightType::F32, &bytes, n_in, n_out, 1)?;
    let xd = gpu.upload(&x)?;
    let mut y = poisoned(gpu, n_tokens * n_out)?;
    gpu.linear(&mut y, &xd, &w, 0, n_tokens)?;
    let want = naive::linear(&x, &w_vals, n_in);
    c.error(&format!("linear F32 {n_tokens}x{n_in} -> {n_out}"), rel_error(&gpu.download(&y)?, &want), 1e-5);
    Ok(())
}

fn grouped(gpu: &Gpu, rng: &mut Rng, c: &mut Checks, ty: WeightType) -> R {
    let (n_mat, n_in, n_out) = (4, 512, 768);
    let groups = [
        ExpertGroup { expert: 2, row0: 0, n_rows: 5 },
        ExpertGroup { expert: 0, row0: 5, n_rows: 12 },
        ExpertGroup { expert: 1, row0: 17, n_rows: 0 },
        ExpertGroup { expert: 3, row0: 17, n_rows: 1 },
    ];
    let n_rows = 18;
    let x = rng.vec(n_rows * n_in, 1.0);
    let (w_words, w_vals) = to_words(&rng.vec(n_mat * n_out * n_in, 0.05), ty);
    let w = Linear::upload_words(gpu, ty, &w_words, n_in, n_out, n_mat)?;
    let xd = gpu.upload(&x)?;
    let mut y = poisoned(gpu, n_rows * n_out)?;
    gpu.linear_grouped(&mut y, &xd, &w, &groups)?;
    let xr = &x;
    let mut want = Vec::new();
    for g in &groups {
        let xs = &xr[g.row0 * n_in..(g.row0 + g.n_rows) * n_in];
        want.extend(naive::linear(xs, &w_vals[g.expert * n_out * n_in..][..n_out * n_in], n_in));
    }
    c.error(
        &format!("linear_grouped {ty:?} {n_mat} experts {n_rows}x{n_in} -> {n_out}"),
        rel_error(&gpu.download(&y)?, &want),
        1e-4,
    );
    Ok(())
}

fn batched(gpu: &Gpu, rng: &mut Rng, c: &mut Checks, ty: WeightType) -> R {
    let (n_mat, n_tokens, n_in, n_out) = (3, 9, 256, 320);
    let x = rng.vec(n_mat * n_tokens * n_in, 1.0);
    let (w_words, w_vals) = to_words(&rng.vec(n_mat * n_out * n_in, 0.05), ty);
    let w = Linear::upload_words(gpu, ty, &w_words, n_in, n_out, n_mat)?;
    let xd = gpu.upload(&x)?;
    let mut y = poisoned(gpu, n_mat * n_tokens * n_out)?;
    gpu.linear_batched(&mut y, &xd, &w, n_tokens)?;
    let xr = &x;
    let want: Vec<f32> = (0..n_mat)
        .flat_map(|m| {
            naive::linear(
                &xr[m * n_tokens * n_in..][..n_tokens * n_in],
                &w_vals[m * n_out * n_in..][..n_out * n_in],
                n_in,
            )
        })
        .collect();
    c.error(
        &format!("linear_batched {ty:?} {n_mat}x{n_tokens}x{n_in} -> {n_out}"),
        rel_error(&gpu.download(&y)?, &want),
        1e-4,
    );
    Ok(())
}

/// Pinned staging: an upload bigger than a slot (several chunks, both slots), then a download.
fn staging(gpu: &Gpu, rng: &mut Rng, c: &mut Checks) -> R {
    let mut st = Staging::new(gpu, 1 << 20)?;
    let n = (5 << 20) / 4 + 123; // 5 MiB + a partial chunk of f32
    let host = rng.vec(n, 10.0);
    let mut dev = poisoned(gpu, n)?;
    st.upload(gpu, &host, &mut dev)?;
    let mut back = Vec::new();
    st.download(gpu, &dev, &mut back)?;
    let differ = back.iter().zip(&host).filter(|(a, b)| a.to_bits() != b.to_bits()).count()
        + host.len().abs_diff(back.len());
    c.exact(&format!("pinned staging upload+download {n} f32 through 1 MiB slots"), differ, n);
    Ok(())
}

/// After one warm step, steps of the same shapes allocate nothing.
fn pool(gpu: &Gpu, c: &mut Checks) -> R {
    let mut pool = Pool::new();
    let step = |pool: &mut Pool| -> R {
        let a = pool.take(gpu, 4096 * 7)?;
        let b = pool.take(gpu, 14336 * 7)?;
        let d = pool.take(gpu, 4096 * 7)?;
        pool.give(a);
        pool.give(b);
        pool.give(d);
        Ok(())
    };
    step(&mut pool)?;
    let warm = pool.allocations();
    for _ in 0..10 {
        step(&mut pool)?;
    }
    c.exact(
        &format!("pool: no allocation after warm-up ({warm} then {})", pool.allocations()),
        pool.allocations() - warm,
        10,
    );
    Ok(())
}
