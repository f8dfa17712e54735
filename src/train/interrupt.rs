//! Stopping a run cleanly: the first SIGINT / SIGTERM while the loop runs lets the current step
//! finish, checkpoints and ends the run with [`Error::Interrupted`](crate::error::Error); a second
//! one, or one outside the loop (loading data, evaluating), exits at once as the signal would.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use crate::error::{Error, Result};

/// A stop request shared between whoever asks (a signal handler, a GUI, a test) and the loop.
#[derive(Clone, Default)]
pub struct Interrupt {
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    /// The signal number asked for (0: none).
    requested: AtomicI32,
    /// True while a training loop can act on a request.
    armed: AtomicBool,
}

impl Interrupt {
    /// A request only [`Interrupt::request`] can make.
    pub fn none() -> Self {
        Interrupt::default()
    }

    /// Installs process-wide SIGINT and SIGTERM handlers feeding this request. Call once, from
    /// a program's `main` side (the library never installs handlers on its own).
    pub fn on_signals() -> Result<Self> {
        let interrupt = Interrupt::default();
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            let state = interrupt.state.clone();
            let action = move || {
                // Only atomics and _exit: async-signal-safe.
                if !state.armed.load(Ordering::SeqCst)
                    || state.requested.swap(signal, Ordering::SeqCst) != 0
                {
                    signal_hook::low_level::exit(128 + signal);
                }
            };
            // SAFETY: the action only touches atomics and calls _exit.
            unsafe { signal_hook::low_level::register(signal, action) }.map_err(|e| {
                Error::Usage(format!("cannot install the Ctrl-C / SIGTERM handler: {e}"))
            })?;
        }
        Ok(interrupt)
    }

    /// Asks the loop to stop after its current step, as `signal` would.
    pub fn request(&self, signal: i32) {
        let _ =
            self.state
                .requested
                .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The signal a stop was asked with, if any.
    pub fn requested(&self) -> Option<i32> {
        match self.state.requested.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(signal),
        }
    }

    /// Lets requests through to the loop until the guard is dropped.
    pub(super) fn arm(&self) -> Armed {
        self.state.armed.store(true, Ordering::SeqCst);
        Armed {
            state: self.state.clone(),
        }
    }
}

pub(super) struct Armed {
    state: Arc<State>,
}

impl Drop for Armed {
    fn drop(&mut self) {
        self.state.armed.store(false, Ordering::SeqCst);
    }
}

/// "SIGINT", "SIGTERM", or the number.
pub fn signal_name(signal: i32) -> String {
    signal_hook::low_level::signal_name(signal)
        .map(str::to_string)
        .unwrap_or_else(|| format!("signal {signal}"))
}
