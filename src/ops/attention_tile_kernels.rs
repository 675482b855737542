//! The two inner loops of the tiled flash attention, per query row and KV tile, with every FMA
//! chain held in registers: `scores` (one chain per KV position over the head dims) and
//! `weighted_sum` (one chain per output dim over the tile's positions). The chains and their
//! order are the portable loops' own, so every path gives the same bits.

use crate::cpu::path::{active, CpuPath};

/// KV positions per tile (`GGML_FA_TILE_KV`).
pub const KV_TILE: usize = 64;

/// `scores(q, kt, kq)`: `kq[j] = Σ_d q[d]·kt[d][j]` from zero, in order of `d` (`kt`: `[dk][KV_TILE]`).
/// `weighted_sum(p, vt, row)`: `row[d] += Σ_j p[j]·vt[j][d]` in order of `j` (`vt`: `[KV_TILE][dv]`).
/// `scores_pair` and `weighted_sum_pair` do the same for two query rows at once, sharing each K or
/// V load and giving the core twice as many independent chains; every chain is unchanged.
pub struct TileKernels {
    pub scores: fn(&[f32], &[f32], &mut [f32; KV_TILE]),
    pub weighted_sum: fn(&[f32; KV_TILE], &[f32], &mut [f32]),
    pub scores_pair: ScoresPair,
    pub weighted_sum_pair: WeightedSumPair,
}

pub type ScoresPair = fn([&[f32]; 2], &[f32], [&mut [f32; KV_TILE]; 2]);
pub type WeightedSumPair = fn([&[f32; KV_TILE]; 2], &[f32], [&mut [f32]; 2]);

/// The kernels of the active CPU path.
pub fn tile_kernels() -> TileKernels {
    tile_kernels_for(active())
}

/// The kernels of `path` (clamped to what this CPU supports).
pub fn tile_kernels_for(path: CpuPath) -> TileKernels {
    #[cfg(target_arch = "x86_64")]
    match CpuPath::clamp(path) {
        CpuPath::Avx512 => {
            return TileKernels {
                scores: x86::scores_avx512,
                weighted_sum: x86::weighted_sum_avx512,
                scores_pair: x86::scores_pair_avx512,
                weighted_sum_pair: x86::weighted_sum_pair_avx512,
            }
        }
        CpuPath::Avx2 => {
            // Two rows of AVX2 chains would need more than its 16 registers: one row at a time.
            return TileKernels {
                scores: x86::scores_avx2,
                weighted_sum: x86::weighted_sum_avx2,
                scores_pair: |q, kt, [a, b]| {
                    x86::scores_avx2(q[0], kt, a);
                    x86::scores_avx2(q[1], kt, b);
                },
                weighted_sum_pair: |p, vt, [a, b]| {
                    x86::weighted_sum_avx2(p[0], vt, a);
                    x86::weighted_sum_avx2(p[1], vt, b);
                },
            };
        }
        CpuPath::Scalar => {}
    }
    TileKernels {
        scores: scores_scalar,
        weighted_sum: weighted_sum_scalar,
        scores_pair: |q, kt, [a, b]| {
            scores_scalar(q[0], kt, a);
            scores_scalar(q[1], kt, b);
        },
        weighted_sum_pair: |p, vt, [a, b]| {
            weighted_sum_scalar(p[0], vt, a);
            weighted_sum_scalar(p[1], vt, b);
        },
    }
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

    pub(super) fn scores_pair_avx512(q: [&[f32]; 2], kt: &[f32], kq: [&mut [f32; KV_TILE]; 2]) {
        assert!(q[0].len() == q[1].len() && kt.len() >= q[0].len() * KV_TILE, "scores: short K tile");
        // SAFETY: as for scores_avx512; both query rows have the checked length.
        unsafe { scores_pair_512(q, kt, kq) }
    }

    pub(super) fn weighted_sum_pair_avx512(p: [&[f32; KV_TILE]; 2], vt: &[f32], row: [&mut [f32]; 2]) {
        let dv = row[0].len();
        if !dv.is_multiple_of(64) || row[1].len() != dv {
            let [a, b] = row;
            weighted_sum_avx512(p[0], vt, a);
            weighted_sum_avx512(p[1], vt, b);
            return;
        }
        assert!(vt.len() >= KV_TILE * dv, "weighted_sum: short V tile");
        // SAFETY: as for weighted_sum_avx512; both rows have dv elements, a multiple of 64.
        unsafe { weighted_sum_pair_512(p, vt, row) }
    }

    // Two rows' accumulators indexed side by side read clearer than zipped iterators here.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx512f")]
    unsafe fn scores_pair_512(q: [&[f32]; 2], kt: &[f32], kq: [&mut [f32; KV_TILE]; 2]) {
        let p = kt.as_ptr();
        let mut a = [[_mm512_setzero_ps(); KV_TILE / 16]; 2];
        for d in 0..q[0].len() {
            let b = [_mm512_set1_ps(q[0][d]), _mm512_set1_ps(q[1][d])];
            for c in 0..KV_TILE / 16 {
                let k = _mm512_loadu_ps(p.add(d * KV_TILE + 16 * c));
                a[0][c] = _mm512_fmadd_ps(k, b[0], a[0][c]);
                a[1][c] = _mm512_fmadd_ps(k, b[1], a[1][c]);
            }
        }
        for (out, acc) in kq.into_iter().zip(a) {
            for (c, ac) in acc.iter().enumerate() {
                _mm512_storeu_ps(out.as_mut_ptr().add(16 * c), *ac);
            }
        }
    }

    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx512f")]
    unsafe fn weighted_sum_pair_512(p: [&[f32; KV_TILE]; 2], vt: &[f32], row: [&mut [f32]; 2]) {
        let dv = row[0].len();
        let pv = vt.as_ptr();
        let pr = [row[0].as_mut_ptr(), row[1].as_mut_ptr()];
        for d0 in (0..dv).step_by(64) {
            let mut a: [[__m512; 4]; 2] =
                std::array::from_fn(|r| std::array::from_fn(|c| _mm512_loadu_ps(pr[r].add(d0 + 16 * c))));
            for j in 0..KV_TILE {
                let b = [_mm512_set1_ps(p[0][j]), _mm512_set1_ps(p[1][j])];
                for c in 0..4 {
                    let v = _mm512_loadu_ps(pv.add(j * dv + d0 + 16 * c));
                    a[0][c] = _mm512_fmadd_ps(v, b[0], a[0][c]);
                    a[1][c] = _mm512_fmadd_ps(v, b[1], a[1][c]);
                }
            }
            for (r, acc) in a.iter().enumerate() {
                for (c, ac) in acc.iter().enumerate() {
                    _mm512_storeu_ps(pr[r].add(d0 + 16 * c), *ac);
                }
            }
        }
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
            let (q2, start2) = (rng.vec(dk, 2.0), rng.vec(dv, 1.0));
            let p2: [f32; KV_TILE] = std::array::from_fn(|i| rng.vec(1, 1.0)[0] - i as f32 * 1e-3);
            let mut want_kq2 = [0f32; KV_TILE];
            scores_scalar(&q2, &kt, &mut want_kq2);
            let mut want_row2 = start2.clone();
            weighted_sum_scalar(&p2, &vt, &mut want_row2);
            for path in CpuPath::ALL.into_iter().filter(|p| p.supported()) {
                let k = tile_kernels_for(path);
                let mut kq = [0f32; KV_TILE];
                (k.scores)(&q, &kt, &mut kq);
                let mut row = start.clone();
                (k.weighted_sum)(&p, &vt, &mut row);
                assert_eq!(kq.map(f32::to_bits), want_kq.map(f32::to_bits), "{path:?} scores dk={dk}");
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&row), bits(&want_row), "{path:?} weighted_sum dv={dv}");
                // The pair kernels: each row as the single-row scalar loops give it.
                let (mut kq0, mut kq1) = ([0f32; KV_TILE], [0f32; KV_TILE]);
                (k.scores_pair)([&q, &q2], &kt, [&mut kq0, &mut kq1]);
                assert_eq!(kq0.map(f32::to_bits), want_kq.map(f32::to_bits), "{path:?} pair dk={dk}");
                assert_eq!(kq1.map(f32::to_bits), want_kq2.map(f32::to_bits), "{path:?} pair dk={dk}");
                let (mut r0, mut r1) = (start.clone(), start2.clone());
                (k.weighted_sum_pair)([&p, &p2], &vt, [&mut r0, &mut r1]);
                assert_eq!(bits(&r0), bits(&want_row), "{path:?} pair dv={dv}");
                assert_eq!(bits(&r1), bits(&want_row2), "{path:?} pair dv={dv}");
            }
        }
    }
}
