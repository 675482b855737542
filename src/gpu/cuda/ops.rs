//! Launch wrappers for the kernels of `cuda/`: every extent is checked here, on the host, because
//! the kernels trust their arguments. All launches go to the compute stream.

use super::memory::DeviceBuffer;
use super::{driver_error, Gpu};
use crate::gpu::GpuError;
use cudarc::driver::{LaunchConfig, PushKernelArg};

pub(super) enum Arg {
    Ptr(u64),
    I32(i32),
    F32(f32),
}

/// RoPE settings (see cuda/rope.cu).
#[derive(Clone, Copy)]
pub struct RopeConfig<'a> {
    /// Rotated dims at the start of each head (even, at most head_dim).
    pub n_rot: usize,
    pub freq_base: f32,
    /// 1 / linear scaling factor.
    pub freq_scale: f32,
    /// Pairs (i, i + n_rot/2) instead of (2i, 2i+1).
    pub neox: bool,
    /// [n_rot/2] frequency divisors (LLaMA-3's rope_freqs).
    pub freq_factors: Option<&'a DeviceBuffer<f32>>,
}

/// An embedding table on the device: [n_vocab][n_embd] of one element type.
pub enum EmbeddingTable {
    F16(DeviceBuffer<u16>),
    Bf16(DeviceBuffer<u16>),
    F32(DeviceBuffer<f32>),
}

pub(super) fn shape(op: &'static str, msg: String) -> GpuError {
    GpuError::Shape { op, msg }
}

pub(super) fn need(op: &'static str, what: &str, have: usize, want: usize) -> Result<(), GpuError> {
    if have < want {
        return Err(shape(op, format!("{what} holds {have} elements, {want} needed")));
    }
    Ok(())
}

pub(super) fn rows_of(op: &'static str, len: usize, row: usize) -> Result<usize, GpuError> {
    if row == 0 || !len.is_multiple_of(row) || len == 0 {
        return Err(shape(op, format!("{len} elements are not whole rows of {row}")));
    }
    Ok(len / row)
}

pub(super) fn int(op: &'static str, v: usize) -> Result<Arg, GpuError> {
    i32::try_from(v).map(Arg::I32).map_err(|_| shape(op, format!("{v} does not fit a kernel int")))
}

fn grid_for(n: usize) -> u32 {
    n.div_ceil(256).clamp(1, 65_535) as u32
}

impl Gpu {
    pub(super) fn launch(
        &self,
        entry: &'static str,
        grid: (u32, u32, u32),
        block: u32,
        args: &[Arg],
    ) -> Result<(), GpuError> {
        let f = self.kernels.function(&self.ctx, entry)?;
        let mut builder = self.compute.launch_builder(&f);
        for a in args {
            match a {
                Arg::Ptr(p) => builder.arg(p),
                Arg::I32(v) => builder.arg(v),
                Arg::F32(v) => builder.arg(v),
            };
        }
        let cfg = LaunchConfig { grid_dim: grid, block_dim: (block, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: the wrappers below pass arguments in the kernel's order and C types, with every
        // extent checked against the buffers.
        unsafe { builder.launch(cfg) }.map_err(driver_error(entry))?;
        Ok(())
    }

    /// hi[i], lo[i] = the 16-bit split of x[i] (cuda/convert.cu); the callers own the extents.
    pub(super) fn launch_split(
        &self,
        entry: &'static str,
        hi: u64,
        lo: u64,
        x: u64,
        n: usize,
    ) -> Result<(), GpuError> {
        self.launch(
            entry,
            (grid_for(n), 1, 1),
            256,
            &[Arg::Ptr(hi), Arg::Ptr(lo), Arg::Ptr(x), int(entry, n)?],
        )
    }

    /// y = x · Wᵀ for 1..=8 rows (cuda/gemv.cu): one warp per output row.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn launch_gemv(
        &self,
        entry: &'static str,
        y: u64,
        w: u64,
        x: u64,
        n_in: usize,
        n_out: usize,
        n_tokens: usize,
    ) -> Result<(), GpuError> {
        if n_tokens == 0 || n_tokens > super::blas::GEMV_MAX_TOKENS {
            return Err(shape("gemv", format!("{n_tokens} rows")));
        }
        let args = [
            Arg::Ptr(y),
            Arg::Ptr(w),
            Arg::Ptr(x),
            int(entry, n_in)?,
            int(entry, n_out)?,
            int(entry, n_tokens)?,
        ];
        let warps_per_block = 8;
        self.launch(entry, (n_out.div_ceil(warps_per_block) as u32, 1, 1), 32 * warps_per_block as u32, &args)
    }

    /// y = rmsnorm(x) * w over rows of n = w.len(). x, y: [n_rows][n].
    pub fn rmsnorm(
        &self,
        y: &mut DeviceBuffer<f32>,
        x: &DeviceBuffer<f32>,
        w: &DeviceBuffer<f32>,
        eps: f32,
    ) -> Result<(), GpuError> {
        let n_rows = rows_of("rmsnorm", x.len(), w.len())?;
        y.set_len(x.len())?;
        let (xp, _gx) = x.ptr(&self.compute);
        let (wp, _gw) = w.ptr(&self.compute);
        let (yp, _gy) = y.ptr_mut(&self.compute);
        let args = [Arg::Ptr(yp), Arg::Ptr(xp), Arg::Ptr(wp), int("rmsnorm", w.len())?, Arg::F32(eps)];
        self.launch("rmsnorm_f32", (n_rows as u32, 1, 1), 256, &args)
    }

    /// Rotary embedding in place. x: [n_tokens][n_head][head_dim]; pos: [n_tokens].
    pub fn rope(
        &self,
        x: &mut DeviceBuffer<f32>,
        pos: &DeviceBuffer<i32>,
        n_head: usize,
        head_dim: usize,
        cfg: &RopeConfig,
    ) -> Result<(), GpuError> {
        let n_tokens = rows_of("rope", x.len(), n_head * head_dim)?;
        need("rope", "pos", pos.len(), n_tokens)?;
        let n_rot = cfg.n_rot;
        if n_rot > head_dim || !n_rot.is_multiple_of(2) {
            return Err(shape("rope", format!("n_rot {n_rot} with head_dim {head_dim}")));
        }
        let (pp, _gp) = pos.ptr(&self.compute);
        let factors = cfg.freq_factors.map(|f| (f.len(), f.ptr(&self.compute)));
        if let Some((len, _)) = &factors {
            need("rope", "freq_factors", *len, n_rot / 2)?;
        }
        let (xp, _gx) = x.ptr_mut(&self.compute);
        let args = [
            Arg::Ptr(xp),
            Arg::Ptr(pp),
            Arg::Ptr(factors.as_ref().map_or(0, |(_, (p, _))| *p)),
            int("rope", n_head)?,
            int("rope", head_dim)?,
            int("rope", n_rot)?,
            Arg::F32(cfg.freq_base),
            Arg::F32(cfg.freq_scale),
            Arg::I32(cfg.neox as i32),
        ];
        self.launch("rope_f32", ((n_tokens * n_head) as u32, 1, 1), 64, &args)
    }

    /// Row-wise softmax of scale * x; rows of n.
    pub fn softmax(
        &self,
        y: &mut DeviceBuffer<f32>,
        x: &DeviceBuffer<f32>,
        n: usize,
        scale: f32,
    ) -> Result<(), GpuError> {
        let n_rows = rows_of("softmax", x.len(), n)?;
        y.set_len(x.len())?;
        let (xp, _gx) = x.ptr(&self.compute);
        let (yp, _gy) = y.ptr_mut(&self.compute);
        let args = [Arg::Ptr(yp), Arg::Ptr(xp), int("softmax", n)?, Arg::F32(scale)];
        self.launch("softmax_f32", (n_rows as u32, 1, 1), 256, &args)
    }

    /// y = silu(gate) * up.
    pub fn swiglu(
        &self,
        y: &mut DeviceBuffer<f32>,
        gate: &DeviceBuffer<f32>,
        up: &DeviceBuffer<f32>,
    ) -> Result<(), GpuError> {
        need("swiglu", "up", up.len(), gate.len())?;
        y.set_len(gate.len())?;
        let (gp, _gg) = gate.ptr(&self.compute);
        let (up_, _gu) = up.ptr(&self.compute);
        let (yp, _gy) = y.ptr_mut(&self.compute);
        let args = [Arg::Ptr(yp), Arg::Ptr(gp), Arg::Ptr(up_), int("swiglu", gate.len())?];
        self.launch("swiglu_f32", (grid_for(gate.len()), 1, 1), 256, &args)
    }

    /// y = a + b.
    pub fn add(
        &self,
        y: &mut DeviceBuffer<f32>,
        a: &DeviceBuffer<f32>,
        b: &DeviceBuffer<f32>,
    ) -> Result<(), GpuError> {
        need("add", "b", b.len(), a.len())?;
        y.set_len(a.len())?;
        let (ap, _ga) = a.ptr(&self.compute);
        let (bp, _gb) = b.ptr(&self.compute);
        let (yp, _gy) = y.ptr_mut(&self.compute);
        self.launch(
            "add_f32",
            (grid_for(a.len()), 1, 1),
            256,
            &[Arg::Ptr(yp), Arg::Ptr(ap), Arg::Ptr(bp), int("add", a.len())?],
        )
    }

    /// y += b (the residual connection).
    pub fn add_assign(&self, y: &mut DeviceBuffer<f32>, b: &DeviceBuffer<f32>) -> Result<(), GpuError> {
        need("add_assign", "b", b.len(), y.len())?;
        let n = int("add_assign", y.len())?;
        let (bp, _gb) = b.ptr(&self.compute);
        let (yp, _gy) = y.ptr_mut(&self.compute);
        self.launch("add_f32", (grid_for(b.len()), 1, 1), 256, &[Arg::Ptr(yp), Arg::Ptr(yp), Arg::Ptr(bp), n])
    }

    /// y[t] = table[ids[t]] as f32. `ids` are checked against the table, then copied into
    /// `ids_dev` (no allocation).
    pub fn embed(
        &self,
        y: &mut DeviceBuffer<f32>,
        table: &EmbeddingTable,
        n_embd: usize,
        ids: &[u32],
        ids_dev: &mut DeviceBuffer<u32>,
    ) -> Result<(), GpuError> {
        let (entry, len) = match table {
            EmbeddingTable::F16(t) => ("get_rows_f16", t.len()),
            EmbeddingTable::Bf16(t) => ("get_rows_bf16", t.len()),
            EmbeddingTable::F32(t) => ("get_rows_f32", t.len()),
        };
        let n_vocab = rows_of("embed", len, n_embd)?;
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= n_vocab) {
            return Err(shape("embed", format!("token id {bad} >= n_vocab {n_vocab}")));
        }
        if ids.is_empty() {
            return Err(shape("embed", "no tokens".into()));
        }
        self.upload_into(ids, ids_dev)?;
        y.set_len(ids.len() * n_embd)?;
        let (tp, _gt) = match table {
            EmbeddingTable::F16(t) | EmbeddingTable::Bf16(t) => t.ptr(&self.compute),
            EmbeddingTable::F32(t) => t.ptr(&self.compute),
        };
        let (ip, _gi) = ids_dev.ptr(&self.compute);
        let (yp, _gy) = y.ptr_mut(&self.compute);
        let args = [Arg::Ptr(yp), Arg::Ptr(tp), Arg::Ptr(ip), int("embed", n_embd)?];
        self.launch(entry, (ids.len() as u32, 1, 1), 256, &args)
    }

    /// Round src ([n_tokens][row_len] f32) into cache rows pos0 .. pos0 + n_tokens (f16).
    pub fn kv_store(
        &self,
        cache: &mut DeviceBuffer<u16>,
        src: &DeviceBuffer<f32>,
        row_len: usize,
        pos0: usize,
    ) -> Result<(), GpuError> {
        let n_tokens = rows_of("kv_store", src.len(), row_len)?;
        need("kv_store", "cache", cache.len(), (pos0 + n_tokens) * row_len)?;
        let (sp, _gs) = src.ptr(&self.compute);
        let (cp, _gc) = cache.ptr_mut(&self.compute);
        let args = [
            Arg::Ptr(cp),
            Arg::Ptr(sp),
            int("kv_store", row_len)?,
            int("kv_store", pos0)?,
            int("kv_store", n_tokens)?,
        ];
        self.launch("kv_store_f16", (grid_for(src.len()), 1, 1), 256, &args)
    }

    /// Causal attention of q ([n_tokens][n_head][head_dim], positions pos0..) over the f16 caches
    /// ([n_ctx][n_kv_head][head_dim]); out gets q's shape.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &self,
        out: &mut DeviceBuffer<f32>,
        q: &DeviceBuffer<f32>,
        k_cache: &DeviceBuffer<u16>,
        v_cache: &DeviceBuffer<u16>,
        n_head: usize,
        n_kv_head: usize,
        head_dim: usize,
        pos0: usize,
        scale: f32,
    ) -> Result<(), GpuError> {
        let n_tokens = rows_of("attention", q.len(), n_head * head_dim)?;
        if head_dim > 256 || n_kv_head == 0 || !n_head.is_multiple_of(n_kv_head) {
            return Err(shape("attention", format!("{n_head} heads / {n_kv_head} KV heads of {head_dim}")));
        }
        let kv_len = (pos0 + n_tokens) * n_kv_head * head_dim;
        need("attention", "k cache", k_cache.len(), kv_len)?;
        need("attention", "v cache", v_cache.len(), kv_len)?;
        out.set_len(q.len())?;
        let (qp, _gq) = q.ptr(&self.compute);
        let (kp, _gk) = k_cache.ptr(&self.compute);
        let (vp, _gv) = v_cache.ptr(&self.compute);
        let (op, _go) = out.ptr_mut(&self.compute);
        let args = [
            Arg::Ptr(op),
            Arg::Ptr(qp),
            Arg::Ptr(kp),
            Arg::Ptr(vp),
            int("attention", n_head)?,
            int("attention", n_kv_head)?,
            int("attention", head_dim)?,
            int("attention", pos0)?,
            Arg::F32(scale),
        ];
        self.launch("attention_f16kv", (n_head as u32, n_tokens as u32, 1), 128, &args)
    }
}
