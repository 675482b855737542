//! Ctrl-C: the first SIGINT sets a flag that the generation loop checks between tokens; the run then
//! prints its timings and exits with 130, as llama-completion does.

use std::sync::atomic::{AtomicBool, Ordering};

pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Set while an interactive session waits for the user's line: Ctrl-C then ends the program at
/// once (exit 130), as llama-completion does, since the blocked read would not see the flag.
pub static EXIT_ON_SIGINT: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_signal: libc::c_int) {
    if EXIT_ON_SIGINT.load(Ordering::SeqCst) {
        // SAFETY: `write` and `_exit` are async-signal-safe; the buffer is a static byte string.
        unsafe {
            libc::write(1, b"\n".as_ptr().cast(), 1);
            libc::_exit(130);
        }
    }
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
