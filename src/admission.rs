//! Turns for request handlers: at most a few handlers run at once, the rest wait in the order
//! they came.
//!
//! Requests are served by one poller thread per core (see the vendored tiny_http's
//! `util/poller.rs`), but every thread back from a wait (a group commit, a slow client) finishes
//! its request too, so under a burst of writes many handlers are runnable on few cores and the
//! scheduler would preempt them mid-request: a request that loses its core waits behind all the
//! others, which is where the tail latency came from (when every connection had a thread of its
//! own, on every load). With turns, a handler runs to the end of its CPU work and the next one
//! in line starts. A handler
//! gives its turn back while it waits on something other than the CPU (a group commit, a call
//! to another server) and takes a new one after.
//!
//! Turns are a soft bound: a handler that has waited `patience` runs without one, so a holder
//! stuck on something slow costs the others at most that wait, never their service.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::{Duration, Instant};

pub struct Admission {
    state: Mutex<State>,
    patience: Duration,
    /// Handlers that ran without a turn after waiting `patience`.
    impatient: AtomicU64,
}

struct State {
    free: usize,
    waiting: VecDeque<Arc<Waiter>>,
}

struct Waiter {
    thread: Thread,
    admitted: AtomicBool,
}

/// A turn; it passes to the next in line when dropped.
pub struct Turn<'a>(&'a Admission);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

impl Admission {
    /// `turns` handlers at once (at least one).
    pub fn new(turns: usize, patience: Duration) -> Admission {
        Admission {
            state: Mutex::new(State {
                free: turns.max(1),
                waiting: VecDeque::new(),
            }),
            patience,
            impatient: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a turn, first come first served; `None` after `patience` without one.
    pub fn enter(&self) -> Option<Turn<'_>> {
        let me = {
            let mut s = self.lock();
            if s.free > 0 && s.waiting.is_empty() {
                s.free -= 1;
                return Some(Turn(self));
            }
            let me = Arc::new(Waiter {
                thread: std::thread::current(),
                admitted: AtomicBool::new(false),
            });
            s.waiting.push_back(me.clone());
            me
        };
        let deadline = Instant::now() + self.patience;
        loop {
            if me.admitted.load(Ordering::Acquire) {
                return Some(Turn(self));
            }
            let now = Instant::now();
            if now >= deadline {
                let mut s = self.lock();
                // Handed a turn between the check and the lock: it is ours.
                if me.admitted.load(Ordering::Acquire) {
                    return Some(Turn(self));
                }
                s.waiting.retain(|w| !Arc::ptr_eq(w, &me));
                self.impatient.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            std::thread::park_timeout(deadline - now);
        }
    }

    /// Hands the turn to the first in line, or frees it.
    fn leave(&self) {
        let mut s = self.lock();
        match s.waiting.pop_front() {
            Some(next) => {
                next.admitted.store(true, Ordering::Release);
                next.thread.unpark();
            }
            None => s.free += 1,
        }
    }

    /// How many handlers ran without a turn, having waited `patience`.
    pub fn impatient(&self) -> u64 {
        self.impatient.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn no_more_than_the_turns_run_at_once_and_every_waiter_gets_one() {
        let a = Arc::new(Admission::new(2, Duration::from_secs(30)));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (a, running, most) = (a.clone(), running.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let turn = a.enter();
                        assert!(turn.is_some(), "waited past patience");
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_micros(200));
                        running.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert_eq!(a.impatient(), 0);
    }

    #[test]
    fn turns_are_given_in_the_order_asked() {
        let a = Arc::new(Admission::new(1, Duration::from_secs(30)));
        let first = a.enter().unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for i in 0..5 {
            let (mine, order) = (a.clone(), order.clone());
            threads.push(std::thread::spawn(move || {
                let _t = mine.enter().unwrap();
                order.lock().unwrap().push(i);
            }));
            // Each is in line before the next one asks.
            while a.lock().waiting.len() < i + 1 {
                std::thread::yield_now();
            }
        }
        drop(first);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_stuck_holder_costs_the_others_only_the_patience() {
        let a = Admission::new(1, Duration::from_millis(30));
        let stuck = a.enter().unwrap();
        let started = Instant::now();
        assert!(a.enter().is_none());
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert_eq!(a.impatient(), 1);
        assert!(a.lock().waiting.is_empty(), "the impatient waiter left the line");
        drop(stuck);
        // The turn came back free, not handed to the one who left.
        assert!(a.enter().is_some());
    }
}
