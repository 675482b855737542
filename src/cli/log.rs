//! llama.cpp's common logger, reduced to what llama-completion shows: text at level 0 on stdout,
//! errors (1), warnings (2) and info (3) on stderr, debug (5) when verbose. `-lv N` drops levels
//! above N; `--log-disable` drops everything, the generated text included (as llama.cpp does).
//! Lines carry no prefix or timestamp (llama.cpp's `--no-log-prefix --no-log-timestamps` look).

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

pub const LEVEL_TEXT: i32 = 0;
pub const LEVEL_ERROR: i32 = 1;
pub const LEVEL_WARN: i32 = 2;
pub const LEVEL_INFO: i32 = 3;
pub const LEVEL_DEBUG: i32 = 5;
/// llama.cpp's default threshold.
pub const DEFAULT_VERBOSITY: i32 = LEVEL_INFO;

static THRESHOLD: AtomicI32 = AtomicI32::new(DEFAULT_VERBOSITY);
static DISABLED: AtomicBool = AtomicBool::new(false);

pub fn configure(verbosity: i32, disabled: bool) {
    THRESHOLD.store(verbosity, Ordering::Relaxed);
    DISABLED.store(disabled, Ordering::Relaxed);
}

pub fn enabled(level: i32) -> bool {
    !DISABLED.load(Ordering::Relaxed) && level <= THRESHOLD.load(Ordering::Relaxed)
}

/// Generated or echoed text: stdout, flushed at once so tokens stream.
pub fn text(bytes: &[u8]) {
    if bytes.is_empty() || !enabled(LEVEL_TEXT) {
        return;
    }
    let mut out = std::io::stdout().lock();
    // A closed pipe (e.g. `| head`) must not abort generation with a panic.
    let _ = out.write_all(bytes);
    let _ = out.flush();
}

/// A log message at `level` on stderr, written as given (callers add the newline).
pub fn message(level: i32, msg: &str) {
    if !enabled(level) {
        return;
    }
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(msg.as_bytes());
    let _ = err.flush();
}

#[macro_export]
macro_rules! log_info {
    ($($arg:tt)*) => { $crate::cli::log::message($crate::cli::log::LEVEL_INFO, &format!($($arg)*)) };
}

#[macro_export]
macro_rules! log_warn {
    ($($arg:tt)*) => { $crate::cli::log::message($crate::cli::log::LEVEL_WARN, &format!($($arg)*)) };
}

#[macro_export]
macro_rules! log_error {
    ($($arg:tt)*) => { $crate::cli::log::message($crate::cli::log::LEVEL_ERROR, &format!($($arg)*)) };
}

#[macro_export]
macro_rules! log_debug {
    ($($arg:tt)*) => { $crate::cli::log::message($crate::cli::log::LEVEL_DEBUG, &format!($($arg)*)) };
}
