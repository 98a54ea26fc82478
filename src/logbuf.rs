//! Log lines written to stderr in batches, as nginx's `access_log … buffer= flush=` does.
//!
//! One `write` per log line was a seventh of the CPU of a fixed response (one access line a
//! request). Lines now go into a buffer in memory, and a thread writes whatever has gathered
//! [`FLUSH_AFTER`] after the first line of a batch: under load, one `write` carries many lines.
//! What it costs: a line reaches stderr up to that long after it was logged, and `kill -9` loses
//! the lines of that last moment (a clean stop, [`flush`], loses none). The buffer is bounded:
//! a line that would take it past [`MAX_BUFFERED`] (stderr not keeping up) is written by its
//! own thread, after the batch before it, exactly as an unbuffered logger would.

use std::io::Write;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How long the first line of a batch waits for others.
pub const FLUSH_AFTER: Duration = Duration::from_millis(10);

/// The most bytes waiting to be written before writers write them themselves.
pub const MAX_BUFFERED: usize = 1 << 20;

struct Shared {
    /// Lines not yet handed to the output, in the order they were logged.
    waiting: Mutex<Vec<u8>>,
    /// Signalled when `waiting` stops being empty.
    filled: Condvar,
    /// Held while writing to stderr, so that batches reach it in order; the batch being written
    /// (kept between batches for its capacity).
    output: Mutex<Vec<u8>>,
}

static SHARED: Shared = Shared {
    waiting: Mutex::new(Vec::new()),
    filled: Condvar::new(),
    output: Mutex::new(Vec::new()),
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these leaves bytes, never a broken invariant.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The writer to give the logger (`env_logger::Target::Pipe`). Its `flush` is a no-op: the
/// batching thread (started on first use) writes, or, if no thread could be started, each
/// line is written as it comes.
pub struct Batched;

impl Write for Batched {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut waiting = lock(&SHARED.waiting);
        if waiting.len() + bytes.len() > MAX_BUFFERED {
            drop(waiting);
            flush();
            let _out = lock(&SHARED.output);
            std::io::stderr().write_all(bytes)?;
            return Ok(bytes.len());
        }
        let was_empty = waiting.is_empty();
        waiting.extend_from_slice(bytes);
        drop(waiting);
        if was_empty {
            if writer_thread_runs() {
                SHARED.filled.notify_one();
            } else {
                flush();
            }
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes every line logged so far to stderr before it returns.
pub fn flush() {
    let mut batch = lock(&SHARED.output);
    std::mem::swap(&mut *lock(&SHARED.waiting), &mut *batch);
    // Nothing to do on a failed write: there is nowhere else to report it.
    let _ = std::io::stderr().write_all(&batch);
    batch.clear();
}

/// Starts the thread that writes batches, once; answers whether it runs.
fn writer_thread_runs() -> bool {
    static RUNS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *RUNS.get_or_init(|| {
        std::thread::Builder::new()
            .name("ingot-log".into())
            .spawn(|| loop {
                let mut waiting = lock(&SHARED.waiting);
                while waiting.is_empty() {
                    waiting = SHARED.filled.wait(waiting).unwrap_or_else(PoisonError::into_inner);
                }
                drop(waiting);
                std::thread::sleep(FLUSH_AFTER);
                flush();
            })
            .is_ok()
    })
}
