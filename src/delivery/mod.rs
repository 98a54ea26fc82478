//! Delivering error logs from the outbox: one dedicated thread per target type (never a request
//! thread), at least once, oldest first, every attempt recorded.
//!
//! Each thread asks the database what is due, sends it, and records the outcome with the next
//! attempt time from the retry schedule. A delivery that fails waits for its next attempt while
//! the ones behind it go on. Nothing about progress lives only in memory: after a crash the due
//! deliveries are simply due again.

pub mod eventbridge;
pub mod webhook;

use crate::ids;
use crate::store::{deliveries, targets, Env};
use crate::App;
use rand::Rng;
use rusqlite::Connection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The Standard Webhooks retry schedule: the delays before attempts 2..=8 (the first attempt is
/// immediate), in seconds.
pub const DEFAULT_SCHEDULE_SECS: &[f64] = &[5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0];
/// The longest `Retry-After` we wait for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);
/// How long an idle delivery thread waits before looking at the outbox again unwoken (it is
/// woken whenever a delivery is written; this only catches another process's writes).
pub const IDLE_WAIT: Duration = Duration::from_secs(1);

/// What one attempt came to.
#[derive(Debug)]
pub enum Outcome {
    Delivered {
        status_code: u16,
    },
    /// Try again later (after `retry_after` if the receiver said so).
    Retry {
        status_code: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
    /// Do not try again.
    Give {
        status_code: Option<u16>,
        error: String,
    },
}

/// The delivery threads and what wakes them.
pub struct Deliverer {
    /// Bumped on every wake, so a wake between "nothing due" and "wait" is not lost.
    generation: Mutex<u64>,
    ready: Condvar,
    stop: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Delays before retries; `len() + 1` attempts in all.
    pub schedule: Vec<Duration>,
    /// The longest wait between looks at the outbox when nothing wakes the thread.
    pub idle_wait: Duration,
    /// Looks at the outbox so far, by every thread (a test seam: an idle thread must sleep).
    looks: std::sync::atomic::AtomicU64,
}

impl Deliverer {
    pub fn new(schedule: Vec<Duration>) -> Deliverer {
        Deliverer {
            generation: Mutex::new(0),
            ready: Condvar::new(),
            stop: AtomicBool::new(false),
            threads: Mutex::default(),
            schedule,
            idle_wait: IDLE_WAIT,
            looks: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Delivery threads that have ended while serving.
    pub fn dead(&self) -> usize {
        self.threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|t| t.is_finished())
            .count()
    }

    /// How many times the delivery threads have looked at the outbox.
    #[doc(hidden)]
    pub fn looks(&self) -> u64 {
        self.looks.load(Ordering::SeqCst)
    }

    /// Starts one thread per target type.
    pub fn start(app: &Arc<App>) -> anyhow::Result<()> {
        let mut threads = app.delivery.threads.lock().unwrap_or_else(|p| p.into_inner());
        for target in [targets::WEBHOOK, targets::EVENTBRIDGE] {
            let app = app.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("ingot-{target}"))
                    .spawn(move || run_target(&app, target))?,
            );
        }
        Ok(())
    }

    /// Something may be due now.
    pub fn wake(&self) {
        *self.generation.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.ready.notify_all();
    }

    /// Stops the threads after their current send.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake();
        let threads: Vec<_> = self
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for t in threads {
            let _ = t.join();
        }
    }

    fn generation(&self) -> u64 {
        *self.generation.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until woken after `seen`, or `timeout`.
    fn wait(&self, seen: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut g = self.generation.lock().unwrap_or_else(|p| p.into_inner());
        // In a loop: a condvar may wake without a notification.
        while *g == seen && !self.stop.load(Ordering::SeqCst) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            g = self.ready.wait_timeout(g, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// When to try again after `attempts` failed tries, or `None` when they are used up.
    fn next_attempt(&self, attempts: i64, retry_after: Option<Duration>) -> Option<Duration> {
        let delay = self.schedule.get(attempts as usize - 1)?;
        if let Some(ra) = retry_after {
            return Some(ra.min(MAX_RETRY_AFTER));
        }
        let jitter = rand::thread_rng().gen_range(0.9..1.1);
        Some(delay.mul_f64(jitter))
    }
}

/// Parses `INGOT_RETRY_SCHEDULE`: comma-separated seconds (decimals allowed).
pub fn parse_schedule(text: &str) -> Result<Vec<Duration>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.parse::<f64>() {
            Ok(v) if v.is_finite() && (0.0..=7.0 * 86400.0).contains(&v) => Ok(Duration::from_secs_f64(v)),
            _ => Err(format!("{s:?} is not a number of seconds between 0 and 604800")),
        })
        .collect()
}

fn run_target(app: &Arc<App>, target: &'static str) {
    let db = match app.store.reader() {
        Ok(c) => c,
        Err(e) => {
            log::error!("{target} delivery could not open a read connection: {e}");
            return;
        }
    };
    let d = &app.delivery;
    while !d.stop.load(Ordering::SeqCst) {
        d.looks.fetch_add(1, Ordering::SeqCst);
        let seen = d.generation();
        let due = match deliveries::due(&db, target, ids::now_ms(), 10) {
            Ok(due) => due,
            Err(e) => {
                log::error!("{target} delivery could not read the outbox: {e}");
                d.wait(seen, d.idle_wait);
                continue;
            }
        };
        if due.is_empty() {
            let next = deliveries::next_due_at(&db, target).ok().flatten();
            let idle = d.idle_wait.as_millis() as i64;
            let wait_ms = next.map(|n| (n - ids::now_ms()).clamp(1, idle)).unwrap_or(idle);
            d.wait(seen, Duration::from_millis(wait_ms as u64));
            continue;
        }
        match target {
            targets::WEBHOOK => {
                for delivery in &due {
                    if d.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let started = Instant::now();
                    let at = ids::now_ms();
                    let outcome = webhook::send(app, &db, delivery);
                    settle(app, delivery, at, started, outcome);
                }
            }
            _ => eventbridge::send_batch(app, &db, &due),
        }
    }
}

/// Records an attempt and schedules what follows it.
pub fn settle(app: &App, delivery: &deliveries::Delivery, at: i64, started: Instant, outcome: Outcome) {
    let duration_ms = started.elapsed().as_millis() as i64;
    let tries = delivery.attempts + 1;
    let (attempt, status, next) = match outcome {
        Outcome::Delivered { status_code } => (
            deliveries::Attempt {
                at,
                status_code: Some(status_code),
                error: None,
                duration_ms,
            },
            deliveries::DELIVERED,
            at,
        ),
        Outcome::Retry {
            status_code,
            error,
            retry_after,
        } => {
            let attempt = deliveries::Attempt {
                at,
                status_code,
                error: Some(error),
                duration_ms,
            };
            match app.delivery.next_attempt(tries, retry_after) {
                Some(wait) => (attempt, deliveries::PENDING, ids::now_ms() + wait.as_millis() as i64),
                None => (attempt, deliveries::FAILED, at),
            }
        }
        Outcome::Give { status_code, error } => (
            deliveries::Attempt {
                at,
                status_code,
                error: Some(error),
                duration_ms,
            },
            deliveries::FAILED,
            at,
        ),
    };
    log::debug!(
        "{} delivery {} of error {}: attempt {tries} -> {status} ({:?}, {}ms)",
        delivery.target,
        delivery.id,
        delivery.error_log_id,
        attempt.status_code,
        duration_ms
    );
    if status == deliveries::FAILED {
        log::warn!(
            "delivery {} of error {} to {} failed for good after {tries} attempts: {}",
            delivery.id,
            delivery.error_log_id,
            delivery.target,
            attempt.error.as_deref().unwrap_or("")
        );
    }
    let result = match status {
        deliveries::DELIVERED => "delivered",
        deliveries::FAILED => "failed",
        _ => "retry",
    };
    app.metrics.attempt(&delivery.target, result);
    let id = delivery.id.clone();
    if let Err(e) = app
        .store
        .write(move |c| deliveries::record(c, &id, &attempt, status, next))
    {
        log::error!("could not record a delivery attempt for {}: {e}", delivery.id);
    }
}

/// Marks a target failing or healthy again, logging the change.
pub fn mark_target(app: &App, db: &Connection, env: Env, target: &'static str, failing: Option<String>) {
    let current = targets::get(db, env, target).ok().flatten().and_then(|t| t.failing);
    if current == failing {
        return;
    }
    match &failing {
        Some(why) => log::warn!("{target} of {} is failing: {why}", env.as_str()),
        None => log::info!("{target} of {} is delivering again", env.as_str()),
    }
    if let Err(e) = app
        .store
        .write(move |c| targets::set_failing(c, env, target, failing.as_deref()))
    {
        log::error!("could not record the {target} state: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_gives_eight_attempts_then_stops() {
        let d = Deliverer::new(
            DEFAULT_SCHEDULE_SECS
                .iter()
                .map(|s| Duration::from_secs_f64(*s))
                .collect(),
        );
        let first = d.next_attempt(1, None).unwrap();
        assert!(
            first >= Duration::from_millis(4500) && first <= Duration::from_millis(5500),
            "{first:?}"
        );
        assert!(d.next_attempt(7, None).unwrap() > Duration::from_secs(30_000));
        assert!(d.next_attempt(8, None).is_none(), "eight attempts in all");
        assert_eq!(
            d.next_attempt(2, Some(Duration::from_secs(42))),
            Some(Duration::from_secs(42))
        );
        assert_eq!(
            d.next_attempt(1, Some(Duration::from_secs(9_999_999))),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn retry_after_is_capped_at_a_day() {
        assert_eq!(MAX_RETRY_AFTER, Duration::from_secs(86_400));
    }

    #[test]
    fn a_wake_after_seen_ends_a_wait_at_once_and_an_unwoken_wait_lasts_its_timeout() {
        let d = Deliverer::new(Vec::new());
        let seen = d.generation();
        d.wake();
        assert_ne!(d.generation(), seen, "a wake moves the generation on");
        let t = Instant::now();
        d.wait(seen, Duration::from_secs(30));
        assert!(t.elapsed() < Duration::from_secs(20), "a wake before the wait was lost");
        // Nothing woke it after `now`: it sleeps its whole timeout.
        let now = d.generation();
        let t = Instant::now();
        d.wait(now, Duration::from_millis(300));
        assert!(t.elapsed() >= Duration::from_millis(300), "{:?}", t.elapsed());
        // A wake from another thread during the wait ends it.
        let d = std::sync::Arc::new(d);
        let waker = d.clone();
        let now = d.generation();
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            waker.wake();
        });
        let t = Instant::now();
        d.wait(now, Duration::from_secs(30));
        assert!(t.elapsed() < Duration::from_secs(20));
        h.join().unwrap();
    }

    #[test]
    fn schedules_parse_and_bad_ones_are_refused() {
        assert!(parse_schedule("604800").is_ok(), "a week is the longest delay");
        assert!(parse_schedule("604800.5").is_err());
        assert_eq!(
            parse_schedule("0.1, 2").unwrap(),
            vec![Duration::from_millis(100), Duration::from_secs(2)]
        );
        assert!(parse_schedule("5,soon").is_err());
        assert!(parse_schedule("-1").is_err());
    }
}
