//! Ctrl-C: SIGINT sets a flag that the generation loop checks between tokens; the run then prints
//! its timings and exits with 130, as llama-completion does. In an interactive session the first
//! Ctrl-C during generation hands control to the user instead (see `interactive`).
//!
//! The handler is installed without `SA_RESTART` (as llama.cpp installs its own), so that a read of
//! stdin blocked in an interactive session returns `EINTR` and the session can end.

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
    // signature `sa_sigaction` expects without SA_SIGINFO; `action` is fully initialised (zeroed,
    // then an empty mask) before `sigaction` reads it.
    unsafe {
        let handler: extern "C" fn(libc::c_int) = on_sigint;
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        action.sa_flags = 0;
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
    }
}
