//! The kernel sources of `cuda/`, embedded in the binary. Each file is one op family; the
//! backend compiles a file with NVRTC the first time one of its entries is used.

/// Helpers prepended to every file (NVRTC is given no include path, so files include nothing).
pub const COMMON: &str = include_str!("../../cuda/common.cuh");

/// One `cuda/*.cu` file and the `extern "C"` kernels it defines.
#[derive(Debug, Clone, Copy)]
pub struct KernelFile {
    pub name: &'static str,
    pub source: &'static str,
    pub entries: &'static [&'static str],
}

macro_rules! kernel_file {
    ($name:literal, [$($entry:literal),+ $(,)?]) => {
        KernelFile {
            name: $name,
            source: include_str!(concat!("../../cuda/", $name)),
            entries: &[$($entry),+],
        }
    };
}

pub const KERNEL_FILES: &[KernelFile] = &[
    kernel_file!("add.cu", ["add_f32"]),
    kernel_file!("attention.cu", ["kv_store_f16", "attention_f16kv"]),
    kernel_file!("convert.cu", ["f32_split_f16", "f32_split_bf16"]),
    kernel_file!("embedding.cu", ["get_rows_f16", "get_rows_bf16", "get_rows_f32"]),
    kernel_file!("gemv.cu", ["gemv_f16", "gemv_bf16"]),
    kernel_file!("moe.cu", ["moe_topk_f32", "moe_gather_f32", "moe_scatter_f32", "moe_weighted_sum_f32"]),
    kernel_file!("rmsnorm.cu", ["rmsnorm_f32"]),
    kernel_file!("rope.cu", ["rope_f32"]),
    kernel_file!("softmax.cu", ["softmax_f32"]),
    kernel_file!("swiglu.cu", ["swiglu_f32"]),
];

impl KernelFile {
    /// The text handed to NVRTC: the common helpers, then the file, with a `#line` reset so that
    /// compiler messages name the file's own lines.
    pub fn full_source(&self) -> String {
        format!("{COMMON}\n#line 1 \"{}\"\n{}", self.name, self.source)
    }
}

/// The file that defines `entry`.
pub fn file_of(entry: &str) -> Option<&'static KernelFile> {
    KERNEL_FILES.iter().find(|f| f.entries.contains(&entry))
}

/// Options given to NVRTC besides the target architecture (the same in the engine, the CI
/// compile check and the device check).
pub const NVRTC_OPTIONS: &[&str] = &["--std=c++17"];

/// The architecture CI compiles for when no GPU says otherwise (Hopper, the device machines).
pub const CI_ARCH: &str = "sm_90";

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `.cu` file in cuda/ is listed, and the list names exactly the kernels each defines.
    #[test]
    fn listed_entries_match_the_sources() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/cuda");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".cu"))
            .collect();
        on_disk.sort();
        let listed: Vec<&str> = KERNEL_FILES.iter().map(|f| f.name).collect();
        assert_eq!(on_disk, listed);
        for file in KERNEL_FILES {
            let defined: Vec<&str> = file
                .source
                .split("extern \"C\" __global__ void ")
                .skip(1)
                .map(|rest| rest.split('(').next().unwrap_or(""))
                .collect();
            assert_eq!(defined, file.entries, "{}", file.name);
            assert!(!COMMON.contains("#include") && !file.source.contains("#include"), "{}", file.name);
        }
        assert_eq!(file_of("attention_f16kv").map(|f| f.name), Some("attention.cu"));
        assert!(file_of("nope").is_none());
    }
}
