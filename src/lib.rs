//! ingot: a self-hosted Embedded iPaaS appliance in one binary over one SQLite file.
//!
//! [`start`] opens (or creates) the database and serves the API on a listener until the
//! returned [`ServerHandle`] is shut down; [`admin`] holds what the `ingot keys` commands do.

pub mod admin;
pub mod admission;
pub mod backup;
pub mod config;
pub mod credtypes;
pub mod crypto;
pub mod delivery;
pub mod engine;
pub mod error;
pub mod handlers;
pub mod http;
pub mod ids;
pub mod jsjson;
pub mod limits;
pub mod logbuf;
pub mod metrics;
pub mod oauth;
pub mod outbound;
pub mod request_signing;
pub mod router;
pub mod store;
pub mod tokens;
pub mod web;
pub mod workflow;

use anyhow::Context;
use config::Config;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use store::Store;
use tokens::SigningKeys;

/// Everything the request threads share.
pub struct App {
    pub config: Config,
    pub store: Store,
    pub signing: SigningKeys,
    /// The key behind `X-Alloy-Signature` on outgoing requests.
    pub request_signing: request_signing::RequestSigner,
    pub engine: engine::Engine,
    pub delivery: delivery::Deliverer,
    pub clock: ids::Clock,
    pub outbound: outbound::Outbound,
    pub limits: limits::RateLimits,
    /// Held while an OAuth token is refreshed (see `oauth::fresh_token`).
    pub oauth_refresh: Mutex<()>,
    /// What the server counts, for `/metrics` (see `metrics`).
    pub metrics: Arc<metrics::Metrics>,
    /// Turns for request handlers (see `admission`).
    pub admission: admission::Admission,
    /// The last write probe of `/readyz`: when, and how it went.
    probe: Mutex<Option<(std::time::Instant, Result<(), String>)>>,
    /// API key id → last use (ms), written to the database in the background so that reads
    /// stay reads.
    key_uses: Mutex<HashMap<String, i64>>,
}

impl App {
    /// Writes a probe row (at most every five seconds; the answer is kept in between), so that
    /// `/readyz` knows the database can really be written.
    pub fn write_probe(&self) -> Result<(), String> {
        let mut last = self.probe.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, result)) = last.as_ref() {
            if at.elapsed() < Duration::from_secs(5) {
                return result.clone();
            }
        }
        let now = self.clock.now_ms();
        let result = self
            .store
            .write(move |c| store::meta::set(c, "ready_probe", &now.to_string()))
            .map_err(|e| e.to_string());
        *last = Some((std::time::Instant::now(), result.clone()));
        result
    }

    /// A backup into `INGOT_BACKUP_DIR`, keeping the newest `INGOT_BACKUP_KEEP`.
    pub fn backup_now(&self) -> anyhow::Result<(backup::Written, Vec<std::path::PathBuf>)> {
        backup::scheduled(
            &self.config.db,
            &self.config.backup_dir,
            self.config.backup_keep,
            self.clock.now_ms(),
        )
    }

    /// Notes that an API key was used; [`App::flush_key_uses`] records it.
    pub fn note_key_use(&self, id: String, at_ms: i64) {
        self.key_uses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, at_ms);
    }

    /// Writes the noted key uses to the database.
    pub fn flush_key_uses(&self) {
        let uses: Vec<(String, i64)> = self
            .key_uses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        if !uses.is_empty() {
            if let Err(e) = self.store.write(move |c| store::keys::touch(c, &uses)) {
                log::warn!("could not record API key use: {e}");
            }
        }
    }
}

/// How long a stop waits for requests in flight.
const STOP_PATIENCE: Duration = Duration::from_secs(10);

/// A running server. Dropping it shuts the server down.
pub struct ServerHandle {
    addr: SocketAddr,
    server: Option<tiny_http::Server>,
    edge: Arc<http::Edge>,
    housekeeping: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
    app: Arc<App>,
    /// The development API key made on the first start of an empty database, if this was it.
    pub first_key: Option<String>,
    /// The metrics listener, when `INGOT_METRICS_LISTEN` asks for one.
    metrics: Option<MetricsServer>,
    /// Held while serving, so that `ingot restore` cannot replace the database underneath.
    _lock: std::fs::File,
}

impl ServerHandle {
    /// The address the server listens on (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Where the metrics listener is, if there is one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|m| m.addr)
    }

    /// Stops taking requests, lets the ones in flight finish, and closes the database.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        // Once only: `shutdown` stops, and the drop that follows must not wait again.
        if self.server.is_none() {
            return;
        }
        // Stop accepting, then let the requests in flight finish (within a bound, so a stop
        // always ends inside systemd's stop timeout: a slow client is cut off).
        self.server.take();
        self.edge.stop(STOP_PATIENCE);
        self.metrics.take();
        self.app.engine.stop();
        self.app.delivery.stop();
        if let Some((tx, handle)) = self.housekeeping.take() {
            drop(tx);
            let _ = handle.join();
        }
        self.app.flush_key_uses();
        self.app.store.close();
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Opens the database named by `config` (creating it, its master key, its token signing key and
/// a first development API key if it is new) and serves the API on `listener`.
pub fn start(config: Config, listener: TcpListener) -> anyhow::Result<ServerHandle> {
    if let Some(dir) = config.db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("while creating {}", dir.display()))?;
    }
    let lock = backup::lock(&config.db)?;
    let (store, first_key) = admin::open_store(&config)?;
    let addr = listener.local_addr().context("while reading the listener's address")?;
    let outbound = outbound::Outbound::new(config.outbound_allow.clone());
    let limits = limits::RateLimits::new(config.rate_per_key, config.rate_per_user);
    let mut delivery = delivery::Deliverer::new(config.retry_schedule.clone());
    delivery.idle_wait = config.delivery_idle_wait;
    let admission = admission::Admission::new(config.handler_turns, config.handler_patience);
    let app = Arc::new(App {
        admission,
        config,
        store,
        signing: SigningKeys::default(),
        request_signing: request_signing::RequestSigner::default(),
        engine: engine::Engine::default(),
        delivery,
        clock: ids::Clock::default(),
        limits,
        oauth_refresh: Mutex::new(()),
        probe: Mutex::new(None),
        metrics: Arc::new(metrics::Metrics::default()),
        outbound,
        key_uses: Mutex::default(),
    });
    if let Some(path) = &app.config.integrations_file {
        let n = handlers::integrations::load_file(&app, path)?;
        log::info!("loaded {n} integrations from {}", path.display());
    }
    engine::Engine::start(&app, app.config.workers).context("while resuming queued runs")?;
    delivery::Deliverer::start(&app).context("while starting the delivery threads")?;
    let edge = Arc::new(http::Edge::default());
    let c = &app.config;
    let limits = tiny_http::Limits {
        max_connections: c.max_connections,
        read_timeout: Some(c.read_timeout),
        idle_timeout: Some(c.idle_timeout),
        header_timeout: c.header_timeout,
        write_timeout: Some(c.write_timeout),
        ..tiny_http::Limits::default()
    };
    let server =
        tiny_http::Server::from_listener_with_handler(listener, http::Edge::handler(app.clone(), edge.clone()), limits)
            .map_err(|e| anyhow::anyhow!("while starting the HTTP server: {e}"))?;
    app.store.stats.metrics.get_or_init(|| app.metrics.clone());
    let metrics = match &app.config.metrics_listen {
        Some(addr) => Some(metrics_server(&app, addr, server.connection_counter())?),
        None => None,
    };
    let (tx, rx) = mpsc::channel::<()>();
    let hk_app = app.clone();
    let hk = std::thread::Builder::new()
        .name("ingot-housekeeping".into())
        .spawn(move || {
            let mut last_backup = std::time::Instant::now();
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(Duration::from_secs(10)) {
                hk_app.flush_key_uses();
                // After a burst, the read pool shrinks back (two stay warm).
                hk_app.store.trim_readers(2, Duration::from_secs(60));
                if let Some(every) = hk_app.config.backup_every {
                    if last_backup.elapsed() >= every {
                        last_backup = std::time::Instant::now();
                        match hk_app.backup_now() {
                            Ok((w, _)) => {
                                log::info!("scheduled backup written: {} ({} bytes)", w.path.display(), w.bytes)
                            }
                            Err(e) => log::error!("scheduled backup failed: {e:#}"),
                        }
                    }
                }
            }
        })
        .context("while starting the housekeeping thread")?;
    log::info!("listening on http://{addr} with database {}", app.config.db.display());
    Ok(ServerHandle {
        addr,
        server: Some(server),
        edge,
        housekeeping: Some((tx, hk)),
        app,
        first_key,
        metrics,
        _lock: lock,
    })
}

/// The metrics listener: its own small server, answering `GET /metrics` only.
fn metrics_server(
    app: &Arc<App>,
    addr: &str,
    connections: Arc<std::sync::atomic::AtomicUsize>,
) -> anyhow::Result<MetricsServer> {
    let listener = TcpListener::bind(addr).with_context(|| format!("while binding the metrics listener {addr}"))?;
    let bound = listener.local_addr()?;
    let server = Arc::new(
        tiny_http::Server::from_listener(listener, None)
            .map_err(|e| anyhow::anyhow!("while starting the metrics listener: {e}"))?,
    );
    let (srv, app) = (server.clone(), app.clone());
    let thread = std::thread::Builder::new()
        .name("ingot-metrics".into())
        .spawn(move || {
            for rq in srv.incoming_requests() {
                let (status, body) = if rq.url() == "/metrics" && rq.method() == &tiny_http::Method::Get {
                    (200, app.metrics.render(&gauges(&app, &connections)))
                } else {
                    (404, "not found: GET /metrics\n".to_string())
                };
                let mut resp = tiny_http::Response::from_string(body).with_status_code(status);
                if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                {
                    resp.add_header(h);
                }
                let _ = rq.respond(resp);
            }
        })
        .context("while starting the metrics thread")?;
    log::info!("metrics on http://{bound}/metrics");
    Ok(MetricsServer {
        addr: bound,
        server,
        thread: Some(thread),
    })
}

/// What is measured at each scrape: the run queues, the outbox, the database files, and the
/// open connections.
fn gauges(app: &App, connections: &std::sync::atomic::AtomicUsize) -> String {
    let mut out = String::new();
    let [dev, prod] = app.engine.waiting();
    metrics::gauge(
        &mut out,
        "ingot_run_queue_depth",
        "Runs waiting for a worker.",
        &[
            ("env=\"development\"".into(), dev as f64),
            ("env=\"production\"".into(), prod as f64),
        ],
    );
    let now = app.clock.now_ms();
    let mut pending = Vec::new();
    let mut oldest = Vec::new();
    if let Ok(db) = app.store.read() {
        for target in [store::targets::WEBHOOK, store::targets::EVENTBRIDGE] {
            if let Ok((n, first)) = store::deliveries::pending_summary(&db, target) {
                pending.push((format!("target=\"{target}\""), n as f64));
                oldest.push((
                    format!("target=\"{target}\""),
                    first.map(|t| ((now - t).max(0)) as f64 / 1000.0).unwrap_or(0.0),
                ));
            }
        }
    }
    metrics::gauge(
        &mut out,
        "ingot_deliveries_pending",
        "Deliveries not yet made.",
        &pending,
    );
    metrics::gauge(
        &mut out,
        "ingot_delivery_oldest_pending_seconds",
        "Age of the oldest pending delivery.",
        &oldest,
    );
    let size = |suffix: &str| {
        let mut p = app.config.db.as_os_str().to_owned();
        p.push(suffix);
        std::fs::metadata(std::path::PathBuf::from(p))
            .map(|m| m.len() as f64)
            .unwrap_or(0.0)
    };
    metrics::gauge(
        &mut out,
        "ingot_database_bytes",
        "Size of the database file.",
        &[(String::new(), size(""))],
    );
    metrics::gauge(
        &mut out,
        "ingot_wal_bytes",
        "Size of the write-ahead log.",
        &[(String::new(), size("-wal"))],
    );
    metrics::gauge(
        &mut out,
        "ingot_open_connections",
        "HTTP connections open on the API listener.",
        &[(
            String::new(),
            connections.load(std::sync::atomic::Ordering::SeqCst) as f64,
        )],
    );
    let commits = app.store.stats.commits() as f64;
    metrics::gauge(
        &mut out,
        "ingot_commits",
        "Transactions committed since start.",
        &[(String::new(), commits)],
    );
    out
}

/// The metrics listener of a running server.
struct MetricsServer {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
