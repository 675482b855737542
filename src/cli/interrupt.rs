//! Ctrl-C: the first SIGINT sets a flag that the generation loop checks between tokens; the run then
//! prints its timings and exits with 130, as llama-completion does.

use std::sync::atomic::{AtomicBool, Ordering};

pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Install the SIGINT handler (Unix); elsewhere Ctrl-C keeps its default effect.
pub fn install() {
    #[cfg(unix)]
    // SAFETY: `on_sigint` only performs an atomic store, which is async-signal-safe, and has the
    // signature `signal` expects.
    unsafe {
        let handler: extern "C" fn(libc::c_int) = on_sigint;
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
    }
}
