//! The two inner loops of the tiled flash attention, per query row and KV tile, with every FMA
//! chain held in registers: `scores` (one chain per KV position over the head dims) and
//! `weighted_sum` (one chain per output dim over the tile's positions). The chains and their
//! order are the portable loops' own, so every path gives the same bits.

use crate::cpu::path::{active, CpuPath};

/// KV positions per tile (`GGML_FA_TILE_KV`).
pub const KV_TILE: usize = 64;

/// `scores(q, kt, kq)`: `kq[j] = Σ_d q[d]·kt[d][j]` from zero, in order of `d` (`kt`: `[dk][KV_TILE]`).
/// `weighted_sum(p, vt, row)`: `row[d] += Σ_j p[j]·vt[j][d]` in order of `j` (`vt`: `[KV_TILE][dv]`).
pub struct TileKernels {
    pub scores: fn(&[f32], &[f32], &mut [f32; KV_TILE]),
    pub weighted_sum: fn(&[f32; KV_TILE], &[f32], &mut [f32]),
}

/// The kernels of the active CPU path.
pub fn tile_kernels() -> TileKernels {
    tile_kernels_for(active())
}

/// The kernels of `path` (clamped to what this CPU supports).
pub fn tile_kernels_for(path: CpuPath) -> TileKernels {
    #[cfg(target_arch = "x86_64")]
    match CpuPath::clamp(path) {
        CpuPath::Avx512 => {
            return TileKernels { scores: x86::scores_avx512, weighted_sum: x86::weighted_sum_avx512 }
        }
        CpuPath::Avx2 => {
            return TileKernels { scores: x86::scores_avx2, weighted_sum: x86::weighted_sum_avx2 }
        }
        CpuPath::Scalar => {}
    }
    TileKernels { scores: scores_scalar, weighted_sum: weighted_sum_scalar }
}

fn scores_scalar(q: &[f32], kt: &[f32], kq: &mut [f32; KV_TILE]) {
    kq.fill(0.0);
    for (d, &qd) in q.iter().enumerate() {
        for (a, b) in kq.iter_mut().zip(&kt[d * KV_TILE..][..KV_TILE]) {
            *a = b.mul_add(qd, *a);
        }
    }
}

fn weighted_sum_scalar(p: &[f32; KV_TILE], vt: &[f32], row: &mut [f32]) {
    let dv = row.len();
    for (j, &pj) in p.iter().enumerate() {
        for (a, b) in row.iter_mut().zip(&vt[j * dv..][..dv]) {
            *a = b.mul_add(pj, *a);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::KV_TILE;

    pub(super) fn scores_avx512(q: &[f32], kt: &[f32], kq: &mut [f32; KV_TILE]) {
        assert!(kt.len() >= q.len() * KV_TILE, "scores: short K tile");
        // SAFETY: handed out only for CpuPath::Avx512 (features detected); length checked above.
        unsafe { scores_512(q, kt, kq) }
    }

    pub(super) fn scores_avx2(q: &[f32], kt: &[f32], kq: &mut [f32; KV_TILE]) {
        assert!(kt.len() >= q.len() * KV_TILE, "scores: short K tile");
        // SAFETY: handed out only for CpuPath::Avx2 (AVX2 and FMA detected); length checked above.
        unsafe { scores_256(q, kt, kq) }
    }

    pub(super) fn weighted_sum_avx512(p: &[f32; KV_TILE], vt: &[f32], row: &mut [f32]) {
        assert!(vt.len() >= KV_TILE * row.len(), "weighted_sum: short V tile");
        // SAFETY: as for scores_avx512.
        unsafe { weighted_sum_512(p, vt, row) }
    }

    pub(super) fn weighted_sum_avx2(p: &[f32; KV_TILE], vt: &[f32], row: &mut [f32]) {
        assert!(vt.len() >= KV_TILE * row.len(), "weighted_sum: short V tile");
        // SAFETY: as for scores_avx2.
        unsafe { weighted_sum_256(p, vt, row) }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn scores_512(q: &[f32], kt: &[f32], kq: &mut [f32; KV_TILE]) {
        let p = kt.as_ptr();
        let mut a = [_mm512_setzero_ps(); KV_TILE / 16];
        for (d, &qd) in q.iter().enumerate() {
            let b = _mm512_set1_ps(qd);
            for (c, ac) in a.iter_mut().enumerate() {
                *ac = _mm512_fmadd_ps(_mm512_loadu_ps(p.add(d * KV_TILE + 16 * c)), b, *ac);
            }
        }
        for (c, ac) in a.iter().enumerate() {
            _mm512_storeu_ps(kq.as_mut_ptr().add(16 * c), *ac);
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn scores_256(q: &[f32], kt: &[f32], kq: &mut [f32; KV_TILE]) {
        let p = kt.as_ptr();
        let mut a = [_mm256_setzero_ps(); KV_TILE / 8];
        for (d, &qd) in q.iter().enumerate() {
            let b = _mm256_set1_ps(qd);
            for (c, ac) in a.iter_mut().enumerate() {
                *ac = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(d * KV_TILE + 8 * c)), b, *ac);
            }
        }
        for (c, ac) in a.iter().enumerate() {
            _mm256_storeu_ps(kq.as_mut_ptr().add(8 * c), *ac);
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn weighted_sum_512(p: &[f32; KV_TILE], vt: &[f32], row: &mut [f32]) {
        let dv = row.len();
        let (pv, pr) = (vt.as_ptr(), row.as_mut_ptr());
        let mut d0 = 0;
        // Four registers of output dims at a time, then one.
        while d0 + 64 <= dv {
            let mut a = [_mm512_setzero_ps(); 4];
            for (c, ac) in a.iter_mut().enumerate() {
                *ac = _mm512_loadu_ps(pr.add(d0 + 16 * c));
            }
            for (j, &pj) in p.iter().enumerate() {
                let b = _mm512_set1_ps(pj);
                for (c, ac) in a.iter_mut().enumerate() {
                    *ac = _mm512_fmadd_ps(_mm512_loadu_ps(pv.add(j * dv + d0 + 16 * c)), b, *ac);
                }
            }
            for (c, ac) in a.iter().enumerate() {
                _mm512_storeu_ps(pr.add(d0 + 16 * c), *ac);
            }
            d0 += 64;
        }
        while d0 + 16 <= dv {
            let mut a = _mm512_loadu_ps(pr.add(d0));
            for (j, &pj) in p.iter().enumerate() {
                a = _mm512_fmadd_ps(_mm512_loadu_ps(pv.add(j * dv + d0)), _mm512_set1_ps(pj), a);
            }
            _mm512_storeu_ps(pr.add(d0), a);
            d0 += 16;
        }
        tail(p, vt, row, d0);
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn weighted_sum_256(p: &[f32; KV_TILE], vt: &[f32], row: &mut [f32]) {
        let dv = row.len();
        let (pv, pr) = (vt.as_ptr(), row.as_mut_ptr());
        let mut d0 = 0;
        while d0 + 32 <= dv {
            let mut a = [_mm256_setzero_ps(); 4];
            for (c, ac) in a.iter_mut().enumerate() {
                *ac = _mm256_loadu_ps(pr.add(d0 + 8 * c));
            }
            for (j, &pj) in p.iter().enumerate() {
                let b = _mm256_set1_ps(pj);
                for (c, ac) in a.iter_mut().enumerate() {
                    *ac = _mm256_fmadd_ps(_mm256_loadu_ps(pv.add(j * dv + d0 + 8 * c)), b, *ac);
                }
            }
            for (c, ac) in a.iter().enumerate() {
                _mm256_storeu_ps(pr.add(d0 + 8 * c), *ac);
            }
            d0 += 32;
        }
        while d0 + 8 <= dv {
            let mut a = _mm256_loadu_ps(pr.add(d0));
            for (j, &pj) in p.iter().enumerate() {
                a = _mm256_fmadd_ps(_mm256_loadu_ps(pv.add(j * dv + d0)), _mm256_set1_ps(pj), a);
            }
            _mm256_storeu_ps(pr.add(d0), a);
            d0 += 8;
        }
        tail(p, vt, row, d0);
    }

    /// Output dims past the last whole vector, one scalar chain each.
    fn tail(p: &[f32; KV_TILE], vt: &[f32], row: &mut [f32], from: usize) {
        let dv = row.len();
        for (d, a) in row.iter_mut().enumerate().skip(from) {
            for (j, &pj) in p.iter().enumerate() {
                *a = vt[j * dv + d].mul_add(pj, *a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_rng::Rng;

    #[test]
    fn every_path_gives_the_scalar_loops_bits() {
        let mut rng = Rng::new(5);
        for (dk, dv) in [(64, 64), (128, 96), (80, 72), (40, 8)] {
            let q = rng.vec(dk, 2.0);
            let kt = rng.vec(dk * KV_TILE, 2.0);
            let vt = rng.vec(KV_TILE * dv, 2.0);
            let p: [f32; KV_TILE] = std::array::from_fn(|i| rng.vec(1, 1.0)[0] + i as f32 * 1e-3);
            let start = rng.vec(dv, 1.0);
            let mut want_kq = [0f32; KV_TILE];
            scores_scalar(&q, &kt, &mut want_kq);
            let mut want_row = start.clone();
            weighted_sum_scalar(&p, &vt, &mut want_row);
            for path in CpuPath::ALL.into_iter().filter(|p| p.supported()) {
                let k = tile_kernels_for(path);
                let mut kq = [0f32; KV_TILE];
                (k.scores)(&q, &kt, &mut kq);
                let mut row = start.clone();
                (k.weighted_sum)(&p, &vt, &mut row);
                assert_eq!(kq.map(f32::to_bits), want_kq.map(f32::to_bits), "{path:?} scores dk={dk}");
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&row), bits(&want_row), "{path:?} weighted_sum dv={dv}");
            }
        }
    }
}
