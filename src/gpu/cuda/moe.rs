//! Launch wrappers for the mixture-of-experts kernels (cuda/moe.cu): the router's top-k, and the
//! gather / scatter / weighted sum that move token rows to their experts and back.

use super::memory::DeviceBuffer;
use super::ops::{int, need, rows_of, shape, Arg};
use super::Gpu;
use crate::gpu::GpuError;

impl Gpu {
    /// Router: logits [n_tokens][n_expert] -> ids and weights [n_tokens][k].
    pub fn moe_topk(
        &self,
        ids: &mut DeviceBuffer<i32>,
        weights: &mut DeviceBuffer<f32>,
        logits: &DeviceBuffer<f32>,
        n_expert: usize,
        k: usize,
        renorm: bool,
    ) -> Result<(), GpuError> {
        let n_tokens = rows_of("moe_topk", logits.len(), n_expert)?;
        if k == 0 || k > n_expert {
            return Err(shape("moe_topk", format!("top {k} of {n_expert} experts")));
        }
        ids.set_len(n_tokens * k)?;
        weights.set_len(n_tokens * k)?;
        let (lp, _gl) = logits.ptr(&self.compute);
        let (ip, _gi) = ids.ptr_mut(&self.compute);
        let (wp, _gw) = weights.ptr_mut(&self.compute);
        let args = [
            Arg::Ptr(ip),
            Arg::Ptr(wp),
            Arg::Ptr(lp),
            int("moe_topk", n_tokens)?,
            int("moe_topk", n_expert)?,
            int("moe_topk", k)?,
            Arg::I32(renorm as i32),
        ];
        self.launch("moe_topk_f32", (n_tokens.div_ceil(128) as u32, 1, 1), 128, &args)
    }

    /// xs[r] = x[rows[r]]; x: [n_tokens][n_embd]. `rows` are checked, then copied into `rows_dev`.
    pub fn moe_gather(
        &self,
        xs: &mut DeviceBuffer<f32>,
        x: &DeviceBuffer<f32>,
        rows: &[i32],
        rows_dev: &mut DeviceBuffer<i32>,
        n_embd: usize,
    ) -> Result<(), GpuError> {
        let n_tokens = rows_of("moe_gather", x.len(), n_embd)?;
        check_indices("moe_gather", rows, n_tokens)?;
        self.upload_into(rows, rows_dev)?;
        xs.set_len(rows.len() * n_embd)?;
        let (xp, _gx) = x.ptr(&self.compute);
        let (rp, _gr) = rows_dev.ptr(&self.compute);
        let (sp, _gs) = xs.ptr_mut(&self.compute);
        let args = [Arg::Ptr(sp), Arg::Ptr(xp), Arg::Ptr(rp), int("moe_gather", n_embd)?];
        self.launch("moe_gather_f32", (rows.len() as u32, 1, 1), 256, &args)
    }

    /// buf[slots[r]] = ys[r]; buf: [n_slots][n_embd] (its current length), ys: [slots.len()][n_embd].
    pub fn moe_scatter(
        &self,
        buf: &mut DeviceBuffer<f32>,
        ys: &DeviceBuffer<f32>,
        slots: &[i32],
        slots_dev: &mut DeviceBuffer<i32>,
        n_embd: usize,
    ) -> Result<(), GpuError> {
        let n_slots = rows_of("moe_scatter", buf.len(), n_embd)?;
        check_indices("moe_scatter", slots, n_slots)?;
        need("moe_scatter", "ys", ys.len(), slots.len() * n_embd)?;
        self.upload_into(slots, slots_dev)?;
        let (yp, _gy) = ys.ptr(&self.compute);
        let (sp, _gs) = slots_dev.ptr(&self.compute);
        let (bp, _gb) = buf.ptr_mut(&self.compute);
        let args = [Arg::Ptr(bp), Arg::Ptr(yp), Arg::Ptr(sp), int("moe_scatter", n_embd)?];
        self.launch("moe_scatter_f32", (slots.len() as u32, 1, 1), 256, &args)
    }

    /// out[t] = Σ_j weights[t][j] · buf[t·k + j]; buf: [n_tokens·k][n_embd].
    pub fn moe_weighted_sum(
        &self,
        out: &mut DeviceBuffer<f32>,
        buf: &DeviceBuffer<f32>,
        weights: &DeviceBuffer<f32>,
        k: usize,
        n_embd: usize,
    ) -> Result<(), GpuError> {
        let n_tokens = rows_of("moe_weighted_sum", weights.len(), k)?;
        need("moe_weighted_sum", "buf", buf.len(), n_tokens * k * n_embd)?;
        out.set_len(n_tokens * n_embd)?;
        let (bp, _gb) = buf.ptr(&self.compute);
        let (wp, _gw) = weights.ptr(&self.compute);
        let (op, _go) = out.ptr_mut(&self.compute);
        let args = [
            Arg::Ptr(op),
            Arg::Ptr(bp),
            Arg::Ptr(wp),
            int("moe_weighted_sum", k)?,
            int("moe_weighted_sum", n_embd)?,
        ];
        self.launch("moe_weighted_sum_f32", (n_tokens as u32, 1, 1), 256, &args)
    }
}

fn check_indices(op: &'static str, idx: &[i32], bound: usize) -> Result<(), GpuError> {
    if idx.is_empty() {
        return Err(shape(op, "no rows".into()));
    }
    match idx.iter().find(|&&i| i < 0 || i as usize >= bound) {
        Some(bad) => Err(shape(op, format!("row {bad} outside 0..{bound}"))),
        None => Ok(()),
    }
}
