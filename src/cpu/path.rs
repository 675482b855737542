//! Which kernel family runs: AVX-512, AVX2+FMA+F16C or portable scalar code. Picked once per
//! process from the CPU's features; `RS_LLAMA_CPU=avx512|avx2|scalar` forces a lower path for
//! tests and A/B comparisons (a path this CPU lacks falls back to the best supported one).

use std::sync::OnceLock;

/// Environment variable that forces a kernel path.
pub const PATH_ENV: &str = "RS_LLAMA_CPU";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CpuPath {
    Scalar,
    Avx2,
    Avx512,
}

impl CpuPath {
    pub const ALL: [CpuPath; 3] = [CpuPath::Scalar, CpuPath::Avx2, CpuPath::Avx512];

    pub fn name(self) -> &'static str {
        match self {
            CpuPath::Scalar => "scalar",
            CpuPath::Avx2 => "avx2",
            CpuPath::Avx512 => "avx512",
        }
    }

    pub fn parse(s: &str) -> Option<CpuPath> {
        CpuPath::ALL.into_iter().find(|p| p.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Whether this CPU can run the path's kernels.
    pub fn supported(self) -> bool {
        match self {
            CpuPath::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            CpuPath::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            CpuPath::Avx512 => {
                CpuPath::Avx2.supported()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The fastest supported path.
    pub fn best() -> CpuPath {
        CpuPath::ALL.into_iter().rev().find(|p| p.supported()).unwrap_or(CpuPath::Scalar)
    }

    /// `requested` if this CPU supports it, else the best supported path below it.
    pub fn clamp(requested: CpuPath) -> CpuPath {
        CpuPath::ALL.into_iter().rev().find(|p| *p <= requested && p.supported()).unwrap_or(CpuPath::Scalar)
    }
}

static ACTIVE: OnceLock<CpuPath> = OnceLock::new();

/// The path every kernel of this process uses (read once; see [`PATH_ENV`]).
pub fn active() -> CpuPath {
    *ACTIVE.get_or_init(|| match std::env::var(PATH_ENV) {
        Ok(v) => match CpuPath::parse(&v) {
            Some(p) => CpuPath::clamp(p),
            None => {
                eprintln!(
                    "warning: {PATH_ENV}={v:?} is not one of avx512, avx2, scalar; using the best path"
                );
                CpuPath::best()
            }
        },
        Err(_) => CpuPath::best(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_clamp_never_exceeds_request() {
        for p in CpuPath::ALL {
            assert_eq!(CpuPath::parse(p.name()), Some(p));
            assert!(CpuPath::clamp(p) <= p);
            assert!(CpuPath::clamp(p).supported());
        }
        assert_eq!(CpuPath::parse(" AVX2 "), Some(CpuPath::Avx2));
        assert_eq!(CpuPath::parse("sse"), None);
    }
}
