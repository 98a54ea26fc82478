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
use std::sync::{Condvar, LazyLock, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

/// How long the first line of a batch waits for others.
pub const FLUSH_AFTER: Duration = Duration::from_millis(10);

/// The most bytes waiting to be written before writers write them themselves.
pub const MAX_BUFFERED: usize = 1 << 20;

/// Lines gathered for one output, and the thread that writes them.
pub struct Batcher {
    /// Lines not yet handed to the output, in the order they were logged.
    waiting: Mutex<Vec<u8>>,
    /// Signalled when `waiting` stops being empty.
    filled: Condvar,
    /// Held while writing, so that batches reach the output in order.
    output: Mutex<Output>,
    max: usize,
    flush_after: Duration,
    /// Whether the writing thread was started (once, on the first line).
    thread: OnceLock<bool>,
}

struct Output {
    /// The batch being written, kept between batches for its capacity.
    batch: Vec<u8>,
    sink: Box<dyn Write + Send>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these leaves bytes, never a broken invariant.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Batcher {
    /// Writes to `sink` at most `flush_after` after the first line of a batch, holding at most
    /// `max` bytes.
    pub fn new(sink: Box<dyn Write + Send>, max: usize, flush_after: Duration) -> Batcher {
        Batcher {
            waiting: Mutex::new(Vec::new()),
            filled: Condvar::new(),
            output: Mutex::new(Output {
                batch: Vec::new(),
                sink,
            }),
            max,
            flush_after,
            thread: OnceLock::new(),
        }
    }

    /// Adds `bytes` to the batch, or, past the bound, writes the batch and then them.
    pub fn push(&'static self, bytes: &[u8]) -> std::io::Result<()> {
        let mut waiting = lock(&self.waiting);
        if waiting.len() + bytes.len() > self.max {
            drop(waiting);
            let mut out = self.flush_locked();
            return out.sink.write_all(bytes);
        }
        let was_empty = waiting.is_empty();
        waiting.extend_from_slice(bytes);
        drop(waiting);
        if was_empty {
            if self.thread_runs() {
                self.filled.notify_one();
            } else {
                // No thread: each line is written as it comes.
                self.flush();
            }
        }
        Ok(())
    }

    /// Writes every line pushed so far before it returns.
    pub fn flush(&self) {
        drop(self.flush_locked());
    }

    /// Writes the waiting lines; answers the output, still held, for a write after them.
    fn flush_locked(&self) -> MutexGuard<'_, Output> {
        let mut out = lock(&self.output);
        let Output { batch, sink } = &mut *out;
        std::mem::swap(&mut *lock(&self.waiting), batch);
        // Nothing to do on a failed write: there is nowhere else to report it.
        let _ = sink.write_all(batch);
        batch.clear();
        out
    }

    /// Starts the thread that writes batches, once; answers whether it runs.
    fn thread_runs(&'static self) -> bool {
        *self.thread.get_or_init(|| {
            std::thread::Builder::new()
                .name("ingot-log".into())
                .spawn(move || loop {
                    let mut waiting = lock(&self.waiting);
                    while waiting.is_empty() {
                        waiting = self.filled.wait(waiting).unwrap_or_else(PoisonError::into_inner);
                    }
                    drop(waiting);
                    std::thread::sleep(self.flush_after);
                    self.flush();
                })
                .is_ok()
        })
    }
}

static STDERR: LazyLock<Batcher> =
    LazyLock::new(|| Batcher::new(Box::new(std::io::stderr()), MAX_BUFFERED, FLUSH_AFTER));

/// The writer to give the logger (`env_logger::Target::Pipe`): lines go to stderr in batches.
/// Its `flush` is a no-op: the batching thread writes.
pub struct Batched;

impl Write for Batched {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        STDERR.push(bytes)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes every line logged to stderr so far before it returns.
pub fn flush() {
    STDERR.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    /// A sink the test can read.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<u8>>>);

    impl Write for Seen {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Seen {
        fn text(&self) -> String {
            String::from_utf8(lock(&self.0).clone()).unwrap()
        }
    }

    fn batcher(max: usize, flush_after: Duration) -> (&'static Batcher, Seen) {
        let seen = Seen::default();
        let b = Box::leak(Box::new(Batcher::new(Box::new(seen.clone()), max, flush_after)));
        (b, seen)
    }

    #[test]
    fn lines_wait_in_memory_until_flushed() {
        let (b, seen) = batcher(1 << 20, Duration::from_secs(600));
        b.push(b"one\n").unwrap();
        b.push(b"two\n").unwrap();
        assert_eq!(seen.text(), "", "written before the batch was due");
        b.flush();
        assert_eq!(seen.text(), "one\ntwo\n");
    }

    #[test]
    fn the_thread_writes_a_batch_soon_after_its_first_line() {
        let (b, seen) = batcher(1 << 20, Duration::from_millis(10));
        b.push(b"one\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.text().is_empty() {
            assert!(Instant::now() < deadline, "the batch was never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(seen.text(), "one\n");
        // And the next batch too, after the thread went back to waiting.
        b.push(b"two\n").unwrap();
        while seen.text() == "one\n" {
            assert!(Instant::now() < deadline, "the second batch was never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(seen.text(), "one\ntwo\n");
    }

    #[test]
    fn a_line_past_the_bound_is_written_at_once_after_the_lines_before_it() {
        let (b, seen) = batcher(16, Duration::from_secs(600));
        b.push(b"0123456789\n").unwrap(); // 11 bytes waiting
        b.push(b"abcd\n").unwrap(); // 16: exactly the bound, still waiting
        assert_eq!(seen.text(), "");
        b.push(b"past\n").unwrap(); // 21: past it
        assert_eq!(seen.text(), "0123456789\nabcd\npast\n");
        b.push(b"next\n").unwrap(); // waiting again, from empty
        assert_eq!(seen.text(), "0123456789\nabcd\npast\n");
        b.flush();
        assert_eq!(seen.text(), "0123456789\nabcd\npast\nnext\n");
    }
}
