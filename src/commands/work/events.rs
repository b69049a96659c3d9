//! Wake-ups for the work loop: SIGCHLD (a handler ended) and SIGINT/SIGTERM
//! (stop), forwarded by a thread to a channel the loop can wait on with a
//! timeout. A handler that ends wakes the loop at once, so the next message
//! starts without a polling delay.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use signal_hook::consts::{SIGCHLD, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

/// The signals the work loop reacts to, and a count of stop requests.
pub(super) struct Events {
    rx: Receiver<i32>,
    handle: Handle,
    thread: Option<JoinHandle<()>>,
    stops: usize,
}

impl Events {
    /// Starts listening. From now on SIGINT and SIGTERM no longer end the
    /// process: the loop counts them.
    pub fn listen() -> anyhow::Result<Events> {
        let mut signals =
            Signals::new([SIGCHLD, SIGINT, SIGTERM]).context("cannot install signal handlers")?;
        let handle = signals.handle();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            for signal in signals.forever() {
                if tx.send(signal).is_err() {
                    break;
                }
            }
        });
        Ok(Events {
            rx,
            handle,
            thread: Some(thread),
            stops: 0,
        })
    }

    /// How many SIGINT/SIGTERM have arrived so far.
    pub fn stops(&self) -> usize {
        self.stops
    }

    /// Sleeps until a signal arrives or `timeout` passes; true when woken
    /// by a signal. Takes every signal that is waiting, so one wake-up
    /// covers several handlers that ended together.
    pub fn wait(&mut self, timeout: Duration) -> bool {
        let first = match self.rx.recv_timeout(timeout) {
            Ok(signal) => signal,
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return false,
        };
        self.count(first);
        while let Ok(signal) = self.rx.try_recv() {
            self.count(signal);
        }
        true
    }

    /// Takes waiting signals without sleeping.
    pub fn poll(&mut self) {
        while let Ok(signal) = self.rx.try_recv() {
            self.count(signal);
        }
    }

    fn count(&mut self, signal: i32) {
        if signal != SIGCHLD {
            self.stops += 1;
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
