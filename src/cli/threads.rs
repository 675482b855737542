//! Thread count defaults: llama.cpp uses the number of physical cores for `-t`.

use std::collections::HashSet;

/// Physical cores from /proc/cpuinfo ("physical id", "core id" pairs), else the logical CPU count.
pub fn physical_cores() -> usize {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| count_physical_cores(&text))
        .unwrap_or_else(logical_cpus)
}

pub fn logical_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Distinct (package, core) pairs in a /proc/cpuinfo text; None if it lists no core ids.
pub fn count_physical_cores(cpuinfo: &str) -> Option<usize> {
    let mut cores = HashSet::new();
    let mut package = String::new();
    for line in cpuinfo.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        match key.trim() {
            "processor" => package.clear(),
            "physical id" => package = value.trim().to_string(),
            "core id" => {
                cores.insert((package.clone(), value.trim().to_string()));
            }
            _ => {}
        }
    }
    (!cores.is_empty()).then_some(cores.len())
}

/// Runs `f` on one of the global pool's threads, so that the thread that drives the model is one
/// of those that compute: a parallel loop then starts without handing work to a sleeping pool
/// and waiting on it, which costs a wake-up per loop (hundreds per generated token).
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    // `scope` called from outside the pool runs its body on a pool thread.
    rayon::scope(|_| f())
}

/// Asks glibc's malloc to keep freed memory for reuse: a forward pass allocates activation
/// buffers of megabytes, which by default come from fresh `mmap`s (page faults and zeroing on
/// every pass) and go back to the kernel when freed.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before the worker threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Size rayon's global pool once; later calls are ignored by rayon (already built).
pub fn init_pool(n_threads: usize) {
    keep_freed_memory();
    let _ = rayon::ThreadPoolBuilder::new().num_threads(n_threads.max(1)).build_global();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_cores_not_hyperthreads() {
        // Two packages, two cores each, two threads per core: 8 processors, 4 cores.
        let mut text = String::new();
        for (cpu, (pkg, core)) in
            [(0, 0), (0, 1), (1, 0), (1, 1), (0, 0), (0, 1), (1, 0), (1, 1)].iter().enumerate()
        {
            text +=
                &format!("processor\t: {cpu}\nphysical id\t: {pkg}\ncore id\t\t: {core}\nflags\t\t: fpu\n\n");
        }
        assert_eq!(count_physical_cores(&text), Some(4));
        assert_eq!(count_physical_cores("processor : 0\nmodel name : x\n"), None);
    }
}
