//! Prometheus metrics, served in the text format on a listener of their own
//! (`INGOT_METRICS_LISTEN`, off by default) so that they never share the API's port.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds (seconds) of the latency buckets.
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Upper bounds of the group-commit batch sizes.
const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// A cumulative histogram with fixed buckets.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len()];
        }
        for (i, b) in bounds.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in bounds.iter().enumerate() {
            let n = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// What the server counts as it works.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    rate_limited: AtomicU64,
    runs: Mutex<BTreeMap<String, Histogram>>,
    attempts: Mutex<BTreeMap<(String, String), u64>>,
    batches: Mutex<Histogram>,
    commit_seconds: Mutex<Histogram>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A label value as the text format wants it.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    /// One answered request, by route name (never the path) and status.
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        *lock(&self.requests).entry((route.to_string(), status)).or_default() += 1;
        lock(&self.latency)
            .entry(route.to_string())
            .or_default()
            .observe(SECONDS, seconds);
    }

    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// A finished run: `succeeded` or `failed`, and how long it ran.
    pub fn run(&self, outcome: &str, seconds: f64) {
        lock(&self.runs)
            .entry(outcome.to_string())
            .or_default()
            .observe(SECONDS, seconds);
    }

    /// One delivery attempt: `delivered`, `retry` or `failed` (given up).
    pub fn attempt(&self, target: &str, result: &str) {
        *lock(&self.attempts)
            .entry((target.to_string(), result.to_string()))
            .or_default() += 1;
    }

    /// One group commit: how many writes it held and how long the commit (the fsync) took.
    pub fn commit(&self, writes: usize, seconds: f64) {
        lock(&self.batches).observe(BATCH, writes as f64);
        lock(&self.commit_seconds).observe(SECONDS, seconds);
    }

    /// The counters as Prometheus text, followed by `gauges` (already formatted).
    pub fn render(&self, gauges: &str) -> String {
        let mut out = String::new();
        out.push_str("# HELP ingot_requests_total Requests answered, by route and status.\n# TYPE ingot_requests_total counter\n");
        for ((route, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "ingot_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                esc(route)
            );
        }
        out.push_str("# HELP ingot_request_duration_seconds Time to answer a request, by route.\n# TYPE ingot_request_duration_seconds histogram\n");
        for (route, h) in lock(&self.latency).iter() {
            h.write(
                &mut out,
                "ingot_request_duration_seconds",
                &format!("route=\"{}\"", esc(route)),
                SECONDS,
            );
        }
        out.push_str(
            "# HELP ingot_rate_limited_total Requests refused with 429.\n# TYPE ingot_rate_limited_total counter\n",
        );
        let _ = writeln!(
            out,
            "ingot_rate_limited_total {}",
            self.rate_limited.load(Ordering::Relaxed)
        );
        out.push_str("# HELP ingot_run_duration_seconds Finished workflow runs, by outcome.\n# TYPE ingot_run_duration_seconds histogram\n");
        for (outcome, h) in lock(&self.runs).iter() {
            h.write(
                &mut out,
                "ingot_run_duration_seconds",
                &format!("outcome=\"{}\"", esc(outcome)),
                SECONDS,
            );
        }
        out.push_str("# HELP ingot_delivery_attempts_total Delivery attempts, by target and result.\n# TYPE ingot_delivery_attempts_total counter\n");
        for ((target, result), n) in lock(&self.attempts).iter() {
            let _ = writeln!(
                out,
                "ingot_delivery_attempts_total{{target=\"{}\",result=\"{}\"}} {n}",
                esc(target),
                esc(result)
            );
        }
        out.push_str(
            "# HELP ingot_commit_batch_writes Writes per group commit.\n# TYPE ingot_commit_batch_writes histogram\n",
        );
        lock(&self.batches).write(&mut out, "ingot_commit_batch_writes", "", BATCH);
        out.push_str("# HELP ingot_commit_seconds Time of each commit, its fsync included.\n# TYPE ingot_commit_seconds histogram\n");
        lock(&self.commit_seconds).write(&mut out, "ingot_commit_seconds", "", SECONDS);
        out.push_str(gauges);
        out
    }
}

/// Formats one gauge family.
pub fn gauge(out: &mut String, name: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (labels, v) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_end_at_inf() {
        let m = Metrics::default();
        m.request("GetUser", 200, 0.0007);
        m.request("GetUser", 200, 0.3);
        let text = m.render("");
        assert!(
            text.contains("ingot_requests_total{route=\"GetUser\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(text.contains("ingot_request_duration_seconds_bucket{route=\"GetUser\",le=\"0.0005\"} 0"));
        assert!(text.contains("ingot_request_duration_seconds_bucket{route=\"GetUser\",le=\"0.001\"} 1"));
        assert!(text.contains("ingot_request_duration_seconds_bucket{route=\"GetUser\",le=\"0.5\"} 2"));
        assert!(text.contains("ingot_request_duration_seconds_bucket{route=\"GetUser\",le=\"+Inf\"} 2"));
        assert!(text.contains("ingot_request_duration_seconds_count{route=\"GetUser\"} 2"));
    }
}
