//! Intermediate tensors written to disk for op-by-op comparison with llama.cpp
//! (`RS_LLAMA_DUMP=DIR`; `compare/tensordump` writes llama.cpp's side, `compare/tensordump/diff.py`
//! compares them). Each forward pass gets `DIR/<pass>/`, each tensor `<name>.<k>.f32` (raw f32,
//! `[n_tok][width]`) under llama.cpp's graph name, `k` counting repeats of a name within the pass. Off (one relaxed load per call) unless the
//! variable is set.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// Environment variable naming the dump directory.
pub const DUMP_ENV: &str = "RS_LLAMA_DUMP";

static ROOT: OnceLock<Option<PathBuf>> = OnceLock::new();
static PASS: AtomicUsize = AtomicUsize::new(0);
static SEEN: Mutex<Option<HashMap<String, usize>>> = Mutex::new(None);

fn root() -> Option<&'static PathBuf> {
    ROOT.get_or_init(|| std::env::var_os(DUMP_ENV).map(PathBuf::from)).as_ref()
}

/// Start the next forward pass's directory.
pub fn next_pass() {
    if root().is_some() {
        PASS.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut seen) = SEEN.lock() {
            *seen = Some(HashMap::new());
        }
    }
}

/// Write `data` as `name` of the current pass (best effort: a dump is a debugging aid).
pub fn tensor(name: &str, data: &[f32]) {
    let Some(root) = root() else { return };
    let dir = root.join((PASS.load(Ordering::Relaxed).saturating_sub(1)).to_string());
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let k = match SEEN.lock() {
        Ok(mut seen) => {
            let count = seen.get_or_insert_with(HashMap::new).entry(name.to_string()).or_insert(0);
            *count += 1;
            *count - 1
        }
        Err(_) => 0,
    };
    let file = dir.join(format!("{name}.{k}.f32"));
    if std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(file, bytes)).is_err() {
        eprintln!("warning: cannot write {name} under {}", dir.display());
    }
}
