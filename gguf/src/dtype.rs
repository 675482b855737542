//! ggml tensor types: ids as stored in GGUF, block sizes and bytes per block.

/// A ggml tensor type. The discriminant is the id stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum DType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2K = 10,
    Q3K = 11,
    Q4K = 12,
    Q5K = 13,
    Q6K = 14,
    Q8K = 15,
    IQ2XXS = 16,
    IQ2XS = 17,
    IQ3XXS = 18,
    IQ1S = 19,
    IQ4NL = 20,
    IQ3S = 21,
    IQ2S = 22,
    IQ4XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
    MXFP4 = 39,
    NVFP4 = 40,
    Q1_0 = 41,
    Q2_0 = 42,
}

/// (type, elements per block, bytes per block, name as llama.cpp prints it)
const TABLE: &[(DType, u64, u64, &str)] = &[
    (DType::F32, 1, 4, "f32"),
    (DType::F16, 1, 2, "f16"),
    (DType::Q4_0, 32, 18, "q4_0"),
    (DType::Q4_1, 32, 20, "q4_1"),
    (DType::Q5_0, 32, 22, "q5_0"),
    (DType::Q5_1, 32, 24, "q5_1"),
    (DType::Q8_0, 32, 34, "q8_0"),
    (DType::Q8_1, 32, 36, "q8_1"),
    (DType::Q2K, 256, 84, "q2_K"),
    (DType::Q3K, 256, 110, "q3_K"),
    (DType::Q4K, 256, 144, "q4_K"),
    (DType::Q5K, 256, 176, "q5_K"),
    (DType::Q6K, 256, 210, "q6_K"),
    (DType::Q8K, 256, 292, "q8_K"),
    (DType::IQ2XXS, 256, 66, "iq2_xxs"),
    (DType::IQ2XS, 256, 74, "iq2_xs"),
    (DType::IQ3XXS, 256, 98, "iq3_xxs"),
    (DType::IQ1S, 256, 50, "iq1_s"),
    (DType::IQ4NL, 32, 18, "iq4_nl"),
    (DType::IQ3S, 256, 110, "iq3_s"),
    (DType::IQ2S, 256, 82, "iq2_s"),
    (DType::IQ4XS, 256, 136, "iq4_xs"),
    (DType::I8, 1, 1, "i8"),
    (DType::I16, 1, 2, "i16"),
    (DType::I32, 1, 4, "i32"),
    (DType::I64, 1, 8, "i64"),
    (DType::F64, 1, 8, "f64"),
    (DType::IQ1M, 256, 56, "iq1_m"),
    (DType::BF16, 1, 2, "bf16"),
    (DType::TQ1_0, 256, 54, "tq1_0"),
    (DType::TQ2_0, 256, 66, "tq2_0"),
    (DType::MXFP4, 32, 17, "mxfp4"),
    (DType::NVFP4, 64, 36, "nvfp4"),
    (DType::Q1_0, 128, 18, "q1_0"),
    (DType::Q2_0, 64, 18, "q2_0"),
];

impl DType {
    /// The type with this file id, if ggml defines it and we know its block layout.
    pub fn from_id(id: u32) -> Option<DType> {
        TABLE.iter().find(|row| row.0 as u32 == id).map(|row| row.0)
    }

    pub fn id(self) -> u32 {
        self as u32
    }

    fn row(self) -> &'static (DType, u64, u64, &'static str) {
        // Every variant has a row; the table test below keeps it that way.
        TABLE.iter().find(|row| row.0 == self).unwrap_or(&TABLE[0])
    }

    /// Elements per block (1 for plain types).
    pub fn block_elems(self) -> u64 {
        self.row().1
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> u64 {
        self.row().2
    }

    /// llama.cpp's name of the type (`f16`, `q4_K`, ...).
    pub fn name(self) -> &'static str {
        self.row().3
    }

    /// The type with this llama.cpp name (case-insensitive).
    pub fn from_name(name: &str) -> Option<DType> {
        TABLE.iter().find(|row| row.3.eq_ignore_ascii_case(name)).map(|row| row.0)
    }

    /// Bytes taken by `n_elems` elements, or `None` if `n_elems` is not a whole number of blocks or the
    /// size overflows.
    pub fn bytes_for(self, n_elems: u64) -> Option<u64> {
        if !n_elems.is_multiple_of(self.block_elems()) {
            return None;
        }
        (n_elems / self.block_elems()).checked_mul(self.block_bytes())
    }

    /// Plain (unquantized) float types that the engine computes with directly.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sizes_match_ggml() {
        for row in TABLE {
            assert_eq!(DType::from_id(row.0 as u32), Some(row.0));
            assert_eq!(DType::from_name(row.3), Some(row.0));
        }
        assert_eq!(DType::from_id(4), None);
        assert_eq!(DType::from_id(31), None);
        assert_eq!(DType::from_id(43), None);
        assert_eq!(DType::Q4_1.bytes_for(64), Some(40));
        assert_eq!(DType::Q4_1.bytes_for(33), None);
        assert_eq!(DType::BF16.bytes_for(3), Some(6));
    }
}
