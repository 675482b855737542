//! The GPU memory budget: `--gpu-mem SIZE` parsing, the default (free memory minus a margin) and a
//! ledger that every device allocation of the backend goes through.

use super::GpuError;
use std::sync::atomic::{AtomicU64, Ordering};

/// Kept free by default for what the backend does not allocate itself: the CUDA context, cuBLAS
/// workspaces, loaded modules and other processes' growth.
pub const BUDGET_MARGIN: u64 = 768 << 20;

/// Parse a memory size: a byte count (`123456`) or a number with a unit, `64k`, `512M`, `8G`,
/// `1.5GiB`, `2T`. This is the one reading of sizes for every tool (`rs-llama --gpu-mem`,
/// `rs-llama-plan --gpu-mem`, `rs-llama-gpu-check --gpu-mem`).
///
/// Units are binary whatever the spelling and case: `K`, `KB` and `KiB` are 2^10 bytes, `M`/`MB`/
/// `MiB` 2^20, `G`/`GB`/`GiB` 2^30, `T`/`TB`/`TiB` 2^40, and `B` (or nothing) is one byte. So
/// `24GB` is 24 GiB = 25,769,803,776 bytes, what a "24GB" GPU holds, not 24e9. Spaces around the
/// number and the unit are ignored; a fraction is allowed (`1.5G`) and rounded down to whole bytes.
/// `0` is a size (no GPU memory: the planner's CPU-only case). A negative number, an exponent, an
/// unknown unit or a size past `u64::MAX` bytes is [`GpuError::BadSize`].
pub fn parse_size(text: &str) -> Result<u64, GpuError> {
    let bad = || GpuError::BadSize(text.to_string());
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let shift: u32 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(bad()),
    };
    // Whole numbers exactly (no f64 rounding of large byte counts); fractions through f64.
    if let Ok(whole) = number.parse::<u64>() {
        return whole.checked_mul(1u64 << shift).ok_or_else(bad);
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let bytes = (value * (1u64 << shift) as f64).floor();
    if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// The budget when none is given: what is free now, less [`BUDGET_MARGIN`].
pub fn default_budget(free: u64) -> u64 {
    free.saturating_sub(BUDGET_MARGIN)
}

/// Bytes reserved against a fixed limit; shared by every buffer of one GPU.
#[derive(Debug)]
pub struct MemLedger {
    limit: u64,
    used: AtomicU64,
}

impl MemLedger {
    pub fn new(limit: u64) -> MemLedger {
        MemLedger { limit, used: AtomicU64::new(0) }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Reserve `bytes`, or fail without reserving anything.
    pub fn reserve(&self, bytes: u64) -> Result<(), GpuError> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let next = used.checked_add(bytes).filter(|&n| n <= self.limit).ok_or(GpuError::OutOfBudget {
                asked: bytes,
                used,
                limit: self.limit,
            })?;
            match self.used.compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(now) => used = now,
            }
        }
    }

    pub fn release(&self, bytes: u64) {
        let _ =
            self.used.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |u| Some(u.saturating_sub(bytes)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("123456").unwrap(), 123_456);
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("512B").unwrap(), 512);
        assert_eq!(parse_size("64k").unwrap(), 65_536);
        assert_eq!(parse_size("64KB").unwrap(), 65_536);
        assert_eq!(parse_size("512M").unwrap(), 536_870_912);
        assert_eq!(parse_size("512MB").unwrap(), 536_870_912);
        assert_eq!(parse_size("8G").unwrap(), 8_589_934_592);
        assert_eq!(parse_size("8GB").unwrap(), 8_589_934_592);
        assert_eq!(parse_size("1.5GiB").unwrap(), 1_610_612_736);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size(" 2 g ").unwrap(), 2_147_483_648);
        assert_eq!(parse_size("1TB").unwrap(), 1 << 40);
        assert_eq!(parse_size("0.5K").unwrap(), 512);
        assert_eq!(parse_size("1.0001K").unwrap(), 1024);
        assert_eq!(parse_size("18446744073709551615").unwrap(), u64::MAX);
    }

    #[test]
    fn gb_means_the_same_as_g_and_gib() {
        // 24GB is 24 GiB (25,769,803,776 bytes), never 24e9.
        for text in ["24G", "24GB", "24GiB", "24g", "24gb", "24gib", "24 GB"] {
            assert_eq!(parse_size(text).unwrap(), 25_769_803_776, "{text}");
        }
        assert_eq!(parse_size("24MB").unwrap(), parse_size("24MiB").unwrap());
        assert_eq!(parse_size("24KB").unwrap(), parse_size("24KiB").unwrap());
        assert_eq!(parse_size("2TB").unwrap(), parse_size("2TiB").unwrap());
    }

    #[test]
    fn bad_sizes_are_errors() {
        for text in ["", "G", "GB", "-1G", "1.2.3G", "8X", "1e3", "12 parsecs", "16777216T", "1e30G", "."] {
            assert!(matches!(parse_size(text), Err(GpuError::BadSize(_))), "{text:?}");
        }
    }

    #[test]
    fn default_budget_keeps_the_margin() {
        assert_eq!(default_budget(80 << 30), (80 << 30) - BUDGET_MARGIN);
        assert_eq!(default_budget(100 << 20), 0);
    }

    #[test]
    fn ledger_refuses_past_its_limit_and_frees() {
        let ledger = MemLedger::new(1000);
        ledger.reserve(600).unwrap();
        let err = ledger.reserve(500).unwrap_err();
        assert!(matches!(err, GpuError::OutOfBudget { asked: 500, used: 600, limit: 1000 }));
        assert_eq!(ledger.used(), 600);
        ledger.release(600);
        ledger.reserve(1000).unwrap();
        assert!(ledger.reserve(1).is_err());
        assert!(ledger.reserve(u64::MAX).is_err());
    }
}
