//! The SQLite store: connections, migrations, the group-commit writer and sealed secrets.
//!
//! # Concurrency design
//! - **Reads** run concurrently, each on a connection of its own: a request borrows one from the
//!   pool ([`Store::read`]) the first time its handler reads, and returns it when it is done.
//!   The pool opens connections on demand up to `INGOT_READERS`, reuses them, makes a request
//!   wait (then `503`) when all are lent, and closes idle ones again ([`Store::trim_readers`]).
//!   The run and delivery threads each keep one for their life. In WAL mode readers never wait
//!   for the writer, so reads scale with the connections being served.
//! - **Writes** go through one writer thread that owns the only write connection. A request
//!   thread sends its write as a closure and blocks until it is durable. The writer takes every
//!   write that is waiting (up to [`MAX_BATCH`]), runs them in one `BEGIN IMMEDIATE` transaction
//!   (each inside its own `SAVEPOINT`, so one failing write rolls back alone), commits once, and
//!   only then answers each caller. With `synchronous=FULL` that single commit is one fsync for
//!   the whole batch: while the disk syncs one batch, the next one gathers, so throughput grows
//!   with concurrency instead of being capped at one fsync per request (group commit).
//! - A reply is sent only after `COMMIT` returned, so a `200` always means the write is on disk
//!   (or, with `INGOT_SYNC=normal`, in the WAL awaiting the next checkpoint).
//! - Other processes (the `ingot keys` commands) write through their own connection;
//!   `busy_timeout` makes the two take turns.

pub mod console;
pub mod credentials;
pub mod deliveries;
pub mod error_logs;
pub mod executions;
pub mod installs;
pub mod integrations;
pub mod keys;
pub mod meta;
pub mod oauth_states;
pub mod request_keys;
pub mod secrets;
pub mod signing;
pub mod stats;
pub mod targets;
pub mod users;
pub mod workflows;

use crate::config::{Config, SyncMode};
use crate::crypto::CryptoError;
use rusqlite::{Connection, OpenFlags};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use secrets::Secrets;

/// The schema: migration 1, then each later step after a line starting `-- migration N:`.
const SCHEMA: &str = include_str!("../../schema.sql");

/// The schema version this binary migrates to.
pub fn schema_version() -> i64 {
    migrations().len() as i64
}

/// Migrations, in order; step N brings `user_version` from N-1 to N.
fn migrations() -> Vec<&'static str> {
    let mut steps = Vec::new();
    let mut rest = SCHEMA;
    while let Some(at) = rest.find("\n-- migration ") {
        steps.push(&rest[..at + 1]);
        rest = &rest[at + 1..];
    }
    steps.push(rest);
    steps
}

/// The most writes one group commit takes.
pub const MAX_BATCH: usize = 256;

/// The environment an API key, and everything made with it, belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Env {
    Development,
    Production,
}

impl Env {
    pub fn as_str(self) -> &'static str {
        match self {
            Env::Development => "development",
            Env::Production => "production",
        }
    }

    pub fn parse(s: &str) -> Option<Env> {
        match s {
            "development" | "dev" => Some(Env::Development),
            "production" | "prod" => Some(Env::Production),
            _ => None,
        }
    }
}

/// A storage failure, small on purpose: handlers map each case to a status.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    /// It existed and no longer works (`410`).
    #[error("{0}")]
    Gone(String),
    /// A well-formed request that the stored data makes invalid (`422`).
    #[error("{0}")]
    Invalid(String),
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("sealed secret: {0}")]
    Crypto(#[from] CryptoError),
    #[error("the write did not complete: {0}")]
    Unavailable(String),
    /// The disk (or the database's size limit) is full: the write was not made.
    #[error("the disk is full")]
    DiskFull,
}

impl StoreError {
    /// Whether this is SQLite saying the disk is full, however it reached us.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::DiskFull => true,
            StoreError::Sqlite(e) => e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull),
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Turns a uniqueness violation into [`StoreError::Conflict`] with `message`.
pub fn conflict_on_unique(e: rusqlite::Error, message: &str) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            StoreError::Conflict(message.to_string())
        }
        _ => StoreError::Sqlite(e),
    }
}

/// Opens a connection to `path` with the pragmas every connection gets.
pub fn open_connection(path: &Path, sync: SyncMode) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure(&conn, sync)?;
    Ok(conn)
}

/// A connection that writes, for the server's writer or a command: checkpoints the WAL only as
/// `INGOT_WAL_AUTOCHECKPOINT` says (never, under Litestream, which checkpoints itself).
pub fn open_writer(config: &Config) -> rusqlite::Result<Connection> {
    let conn = open_connection(&config.db, config.sync)?;
    conn.pragma_update(None, "wal_autocheckpoint", config.wal_autocheckpoint)?;
    Ok(conn)
}

/// Sets the pragmas, once per connection.
pub fn configure(conn: &Connection, sync: SyncMode) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "secure_delete", "ON")?;
    let sync = match sync {
        SyncMode::Full => "FULL",
        SyncMode::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    // SQLite re-prepares a statement whenever a new value is bound to a parameter its planner
    // looked at (`LIMIT ?`, `col = ?` outside an index): with the statement cache clearing
    // bindings, that was a full re-parse and re-plan of the list query on every request. No
    // query here needs a plan chosen by its parameters' values.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Brings the schema up to date; refuses a database made by a newer binary.
pub fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let steps = migrations();
    let known = steps.len() as i64;
    if current > known {
        anyhow::bail!(
            "the database is at schema version {current}, newer than this binary knows ({known}); \
             use a newer ingot"
        );
    }
    for (i, step) in steps.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        log::info!("database migrated to schema version {}", i + 1);
    }
    Ok(())
}

type Reply = Box<dyn FnOnce(Option<StoreError>) + Send>;
/// A write: runs on the writer's connection and says whether it succeeded, whether it failed
/// for a full disk, and how to answer its caller once the commit is decided.
type Job = Box<dyn FnOnce(&Connection) -> (bool, bool, Reply) + Send>;

/// What the writer has done, counted where SQLite reports it (its commit hook), so that the
/// counts say what reached the disk rather than what the writer meant to do.
#[derive(Default)]
pub struct WriterStats {
    /// Transactions SQLite committed on the write connection.
    commits: AtomicU64,
    /// Writes handed to the writer and not yet taken into a batch.
    queued: AtomicUsize,
    /// Commits still to be turned into rollbacks (a fault seam for tests).
    veto: AtomicUsize,
    /// Where each group commit's size and time are recorded, once the server has metrics.
    pub metrics: std::sync::OnceLock<Arc<crate::metrics::Metrics>>,
}

impl WriterStats {
    /// Transactions committed so far on the write connection.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }

    /// Writes waiting for the writer.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Makes the next `n` commits fail (SQLite rolls them back), as a full disk would. For
    /// tests that show a caller never hears success for a write that did not commit.
    #[doc(hidden)]
    pub fn fail_next_commits(&self, n: usize) {
        self.veto.store(n, Ordering::SeqCst);
    }

    /// The commit hook: counts a commit, or vetoes it while a veto is pending.
    fn on_commit(&self) -> bool {
        let vetoed = self
            .veto
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if !vetoed {
            self.commits.fetch_add(1, Ordering::SeqCst);
        }
        vetoed
    }
}

/// How long a request waits for a read connection when every one is in use.
const READER_WAIT: Duration = Duration::from_secs(5);

/// The read connections requests borrow: opened on demand up to `max`, reused, and closed
/// again when idle (see [`Store::trim_readers`]).
struct ReadPool {
    /// Idle connections with the time each was returned, oldest first.
    idle: Mutex<Vec<(Connection, Instant)>>,
    /// Connections open, idle or lent.
    open: AtomicUsize,
    returned: Condvar,
    /// Requests waiting for a connection (changed only under the `idle` lock), so a return
    /// wakes someone only when someone waits: a notify is a system call.
    waiting: AtomicUsize,
    max: usize,
    closed: AtomicBool,
}

/// A read connection lent to one request; it goes back to the pool when dropped.
pub struct Reader<'a> {
    pool: &'a ReadPool,
    conn: Option<Connection>,
}

impl std::ops::Deref for Reader<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
            .as_ref()
            .expect("a lent reader holds its connection until dropped")
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if self.pool.closed.load(Ordering::SeqCst) {
            self.pool.open.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        let mut idle = lock(&self.pool.idle);
        idle.push((conn, Instant::now()));
        if self.pool.waiting.load(Ordering::SeqCst) > 0 {
            self.pool.returned.notify_one();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The database: where it is, the writer thread, and the keys that seal its secrets.
pub struct Store {
    path: PathBuf,
    sync: SyncMode,
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: ReadPool,
    pub secrets: Arc<Secrets>,
    pub stats: Arc<WriterStats>,
}

impl Store {
    /// Opens (creating if needed) and migrates the database, and starts the writer thread.
    pub fn open(config: &Config, secrets: Arc<Secrets>) -> anyhow::Result<Store> {
        let (path, sync) = (config.db.as_path(), config.sync);
        let mut conn = open_writer(config)?;
        migrate(&mut conn)?;
        let stats = Arc::new(WriterStats::default());
        let hook = stats.clone();
        conn.commit_hook(Some(move || hook.on_commit()))?;
        let (tx, rx) = mpsc::channel::<Job>();
        let queue = stats.clone();
        let writer = std::thread::Builder::new()
            .name("ingot-writer".into())
            .spawn(move || run_writer(conn, rx, &queue))?;
        Ok(Store {
            path: path.to_path_buf(),
            sync,
            sender: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            readers: ReadPool {
                idle: Mutex::default(),
                open: AtomicUsize::new(0),
                returned: Condvar::new(),
                waiting: AtomicUsize::new(0),
                max: config.max_readers.max(1),
                closed: AtomicBool::new(false),
            },
            secrets,
            stats,
        })
    }

    /// A new connection for one long-lived thread's reads (a run worker, a delivery thread).
    pub fn reader(&self) -> rusqlite::Result<Connection> {
        open_connection(&self.path, self.sync)
    }

    /// Lends a read connection from the pool: an idle one, a new one while fewer than the
    /// pool's maximum are open, or the next one returned (waiting up to five seconds, then
    /// `Unavailable`).
    pub fn read(&self) -> Result<Reader<'_>> {
        let pool = &self.readers;
        let deadline = Instant::now() + READER_WAIT;
        let mut idle = lock(&pool.idle);
        loop {
            if pool.closed.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("the store is shutting down".into()));
            }
            if let Some((conn, _)) = idle.pop() {
                return Ok(Reader { pool, conn: Some(conn) });
            }
            if pool.open.load(Ordering::SeqCst) < pool.max {
                pool.open.fetch_add(1, Ordering::SeqCst);
                drop(idle);
                return match open_connection(&self.path, self.sync) {
                    Ok(conn) => Ok(Reader { pool, conn: Some(conn) }),
                    Err(e) => {
                        pool.open.fetch_sub(1, Ordering::SeqCst);
                        Err(StoreError::Sqlite(e))
                    }
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StoreError::Unavailable("every read connection is busy".into()));
            }
            pool.waiting.fetch_add(1, Ordering::SeqCst);
            tiny_http::before_block();
            idle = pool
                .returned
                .wait_timeout(idle, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            pool.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Read connections open, lent or idle.
    pub fn readers_open(&self) -> usize {
        self.readers.open.load(Ordering::SeqCst)
    }

    /// Closes idle read connections unused for `idle_for`, keeping at least `keep` idle ones.
    pub fn trim_readers(&self, keep: usize, idle_for: Duration) {
        let mut idle = lock(&self.readers.idle);
        let mut closing = Vec::new();
        while idle.len() > keep && idle.first().is_some_and(|(_, at)| at.elapsed() >= idle_for) {
            closing.push(idle.remove(0));
        }
        self.readers.open.fetch_sub(closing.len(), Ordering::SeqCst);
        drop(idle);
        drop(closing);
    }

    /// Runs `f` inside the next group commit and returns its result once it is durable.
    /// If `f` fails, its own changes are rolled back and the rest of the batch commits.
    pub fn write<T: Send + 'static>(&self, f: impl FnOnce(&Connection) -> Result<T> + Send + 'static) -> Result<T> {
        let (reply_tx, reply_rx) = mpsc::sync_channel::<Result<T>>(1);
        let job: Job = Box::new(move |conn| {
            let result = f(conn);
            let ok = result.is_ok();
            let full = result.as_ref().err().is_some_and(StoreError::is_disk_full);
            let reply: Reply = Box::new(move |commit_error| {
                let _ = reply_tx.send(match commit_error {
                    Some(e) => Err(e),
                    None => result,
                });
            });
            (ok, full, reply)
        });
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let sender = sender.ok_or_else(|| StoreError::Unavailable("the store is shutting down".into()))?;
        self.stats.queued.fetch_add(1, Ordering::SeqCst);
        if sender.send(job).is_err() {
            self.stats.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(StoreError::Unavailable("the writer has stopped".into()));
        }
        reply_rx
            .recv()
            .map_err(|_| StoreError::Unavailable("the write was abandoned (see the log)".into()))?
    }

    /// Stops the writer after the writes already queued, and closes its connection.
    pub fn close(&self) {
        self.readers.closed.store(true, Ordering::SeqCst);
        let idle: Vec<_> = lock(&self.readers.idle).drain(..).collect();
        self.readers.open.fetch_sub(idle.len(), Ordering::SeqCst);
        drop(idle);
        self.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = h.join();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

fn run_writer(conn: Connection, rx: mpsc::Receiver<Job>, stats: &WriterStats) {
    while let Ok(first) = rx.recv() {
        // Before committing, the writer yields the core (twice, and again after each write
        // that arrived meanwhile): handlers that are runnable on it submit their writes into
        // this batch instead of the next. An fsync'd commit costs the core itself, not only
        // the wait (on one core, a create took 58 µs of CPU with `synchronous=FULL` and 39 µs
        // with `NORMAL`, about 170 µs a commit of nine), so fewer, larger commits leave more of
        // it for requests: 14.3 writes a commit instead of 8.8 at 16 connections. With nothing
        // else runnable, a yield returns at once.
        let mut batch = vec![first];
        let mut yields = 0;
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => {
                    batch.push(job);
                    yields = 0;
                }
                Err(_) if yields < 2 => {
                    yields += 1;
                    std::thread::yield_now();
                }
                Err(_) => break,
            }
        }
        stats.queued.fetch_sub(batch.len(), Ordering::SeqCst);
        run_batch(&conn, batch, stats);
    }
    log::debug!("writer stopped");
}

/// Runs a transaction-control statement, prepared once per connection: the writer runs four of
/// them for every write.
fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Ends a job's savepoint: its changes stay in the transaction if it succeeded (`keep`), and
/// are rolled back otherwise.
fn end_job(conn: &Connection, keep: bool) {
    if !keep {
        let _ = control(conn, "ROLLBACK TO job");
    }
    let _ = control(conn, "RELEASE job");
}

/// Runs one group commit (or more, when SQLite rolls a transaction back on its own).
fn run_batch(conn: &Connection, batch: Vec<Job>, stats: &WriterStats) {
    let mut jobs = batch.into_iter().peekable();
    while jobs.peek().is_some() {
        if let Err(e) = control(conn, "BEGIN IMMEDIATE") {
            // Dropping the jobs unrun drops their reply senders: each caller sees Unavailable.
            log::error!("could not begin a write transaction: {e}");
            return;
        }
        let mut replies = Vec::new();
        let mut rolled_back = None;
        for job in jobs.by_ref() {
            if let Err(e) = control(conn, "SAVEPOINT job") {
                log::error!("could not open a savepoint: {e}");
                continue;
            }
            match catch_unwind(AssertUnwindSafe(|| job(conn))) {
                Ok((ok, full, reply)) => {
                    replies.push(reply);
                    // On a full disk (and some I/O errors) SQLite rolls back the whole
                    // transaction itself: every write of this batch so far is gone.
                    if conn.is_autocommit() {
                        rolled_back = Some(full);
                        break;
                    }
                    end_job(conn, ok);
                }
                Err(_) => {
                    // The job's reply sender was dropped with it: its caller sees Unavailable.
                    log::error!("a write panicked; its changes were rolled back");
                    end_job(conn, false);
                }
            }
        }
        if let Some(full) = rolled_back {
            log::error!(
                "a write transaction was rolled back by SQLite{}",
                if full { ": the disk is full" } else { "" }
            );
            for r in replies {
                r(Some(if full {
                    StoreError::DiskFull
                } else {
                    StoreError::Unavailable("the transaction was rolled back".into())
                }));
            }
            continue;
        }
        let committing = Instant::now();
        let committed = control(conn, "COMMIT");
        if let (Ok(()), Some(m)) = (&committed, stats.metrics.get()) {
            m.commit(replies.len(), committing.elapsed().as_secs_f64());
        }
        match committed {
            Ok(()) => replies.into_iter().for_each(|r| r(None)),
            Err(e) => {
                log::error!("group commit failed: {e}");
                let _ = control(conn, "ROLLBACK");
                let full = e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull);
                for r in replies {
                    r(Some(if full {
                        StoreError::DiskFull
                    } else {
                        StoreError::Unavailable(format!("commit failed: {e}"))
                    }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_applies_to_an_empty_database() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(v, migrations().len() as i64);
        assert_eq!(v, 6, "schema.sql holds six steps");
        // A second run is a no-op.
        migrate(&mut conn).unwrap();
        let fk: Vec<String> = conn
            .prepare("SELECT \"table\" || ':' || on_delete FROM pragma_foreign_key_list('workflows')")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(fk.contains(&"users:CASCADE".to_string()), "{fk:?}");
    }

    /// Migration 6 rebuilds two error-log indexes over the logs already there: none is lost,
    /// and a page by user or by workflow still finds them, newest first, with its total.
    #[test]
    fn a_schema_5_database_with_error_logs_migrates_to_the_covering_indexes() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        for step in &migrations()[..5] {
            conn.execute_batch(step).unwrap();
        }
        conn.pragma_update(None, "user_version", 5).unwrap();
        let mut written = Vec::new();
        for i in 0..30 {
            let user = if i % 3 == 0 { "u1" } else { "u2" };
            let mut log = error_logs::new_log(Env::Production, user, "w1", "x", "b", "http", "Call", "boom");
            log.created_at += i;
            error_logs::insert(&conn, &log).unwrap();
            written.push(log);
        }
        migrate(&mut conn).unwrap();
        assert_eq!(
            conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
                .unwrap(),
            6
        );
        let query = |user: Option<&str>| error_logs::Query {
            env: Env::Production,
            workflow_id: user.is_none().then(|| "w1".to_string()),
            user_id: user.map(str::to_string),
            block_type: None,
            execution_id: None,
            from_ms: None,
            to_ms: None,
            sort_column: "created_at",
            descending: true,
            skip: 0,
            after: None,
            limit: 100,
        };
        let (page, total) = error_logs::query(&conn, &query(Some("u1"))).unwrap();
        let mut want: Vec<_> = written.iter().filter(|l| l.user_id == "u1").cloned().collect();
        want.reverse();
        assert_eq!((page, total), (want, 10));
        let (page, total) = error_logs::query(&conn, &query(None)).unwrap();
        assert_eq!((page.len(), total), (30, 30));
        assert_eq!(page.first().map(|l| &l.id), written.last().map(|l| &l.id));
    }

    /// A database made by the previous release (schema 1) with data in it is brought forward:
    /// its integration gets its first version, and the new columns and tables are there.
    #[test]
    fn a_schema_1_database_with_data_migrates_forward() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        conn.execute_batch(migrations()[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO integrations (id, env, name, app, credential_type, version, workflows, created_at, updated_at) \
             VALUES ('i1', 'development', 'Old', 'crm', NULL, 3, '[]', 10, 20)",
            [],
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(v, schema_version());
        let (version, at): (i64, i64) = conn
            .query_row(
                "SELECT version, created_at FROM integration_versions WHERE integration_id = 'i1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((version, at), (3, 20), "the current definition became its version");
        let (icon, types): (Option<String>, String) = conn
            .query_row(
                "SELECT icon, credential_types FROM integrations WHERE id = 'i1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((icon, types.as_str()), (None, "[]"));
        for table in [
            "install_links",
            "installations",
            "oauth_states",
            "console_sessions",
            "request_signing_keys",
        ] {
            let n: i64 = conn
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                    [table],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(n, 1, "{table}");
        }
    }

    /// A sealed column missing from `SEALED_COLUMNS` would be left under an old master key by
    /// a rotation (and then lost with it) and skipped by `ingot verify`.
    #[test]
    fn every_sealed_column_is_listed_for_rotation_and_verify() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let columns: Vec<(String, String)> = conn
            .prepare(
                "SELECT m.name, c.name FROM sqlite_master m, pragma_table_info(m.name) c \
                 WHERE m.type = 'table' AND c.name LIKE '%\\_sealed' ESCAPE '\\'",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(columns.len() >= 7, "{columns:?}");
        for (table, column) in &columns {
            assert!(
                secrets::SEALED_COLUMNS
                    .iter()
                    .any(|c| c.table == table && c.column == column),
                "{table}.{column} is not in SEALED_COLUMNS"
            );
        }
    }

    #[test]
    fn a_full_disk_is_recognised_however_it_arrives() {
        assert!(StoreError::DiskFull.is_disk_full());
        let full = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL), None);
        assert!(StoreError::Sqlite(full).is_disk_full());
        assert!(!StoreError::NotFound.is_disk_full());
        assert!(!StoreError::Unavailable("busy".into()).is_disk_full());
    }

    #[test]
    fn a_newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
        let e = migrate(&mut conn).unwrap_err().to_string();
        assert!(e.contains("newer"), "{e}");
    }

    #[test]
    fn a_writer_checkpoints_only_as_configured() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ingot.db");
        let pages = |value: Option<&str>| {
            let config = Config::from_vars(|k| match k {
                "INGOT_DB" => Some(db.display().to_string()),
                "INGOT_WAL_AUTOCHECKPOINT" => value.map(str::to_string),
                _ => None,
            })
            .unwrap();
            let conn = open_writer(&config).unwrap();
            conn.pragma_query_value(None, "wal_autocheckpoint", |r| r.get::<_, i64>(0))
                .unwrap()
        };
        assert_eq!(pages(None), 1000);
        assert_eq!(pages(Some("0")), 0, "under Litestream, ingot never checkpoints");
        assert_eq!(pages(Some("250")), 250);
    }

    #[test]
    fn a_cached_statement_is_not_prepared_again_for_new_values() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_connection(&dir.path().join("ingot.db"), SyncMode::Full).unwrap();
        migrate(&mut conn).unwrap();
        let mut filter = users::Filter {
            after: None,
            prefix: None,
            parent_workflow_id: None,
            limit: 50,
        };
        for limit in [50, 10, 1, 0, 50] {
            filter.limit = limit;
            filter.prefix = Some(format!("p{limit}"));
            users::list(&conn, Env::Development, &filter).unwrap();
        }
        // The same cached statement, with its own counter.
        let st = conn.prepare_cached(users::list_sql()).unwrap();
        assert_eq!(
            st.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "the list statement was prepared again for new values"
        );
    }

    /// An in-memory database with the first `steps` migrations applied, as an older ingot left it.
    fn at_version(steps: usize) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        for step in &migrations()[..steps] {
            conn.execute_batch(step).unwrap();
        }
        conn.pragma_update(None, "user_version", steps as i64).unwrap();
        conn
    }

    #[test]
    fn migration_4_counts_the_logs_already_there() {
        let mut conn = at_version(3);
        for (i, env) in ["development", "development", "production"].iter().enumerate() {
            conn.execute(
                "INSERT INTO error_logs VALUES (?1, ?2, 'u', 'w', 'e', 'b', 'http', 'B', 'x', 0, 0)",
                rusqlite::params![format!("log{i}"), env],
            )
            .unwrap();
        }
        migrate(&mut conn).unwrap();
        let count = |env: &str| -> i64 {
            conn.query_row("SELECT n FROM error_log_counts WHERE env = ?1", [env], |r| r.get(0))
                .unwrap()
        };
        assert_eq!((count("development"), count("production")), (2, 1));
        conn.execute("DELETE FROM error_logs WHERE id = 'log0'", []).unwrap();
        assert_eq!(count("development"), 1);
    }

    #[test]
    fn migration_5_tallies_each_users_and_workflows_logs_and_the_triggers_keep_them() {
        use rusqlite::OptionalExtension;
        let mut conn = at_version(4);
        let log = |conn: &Connection, id: &str, env: &str, user: &str, workflow: &str| {
            conn.execute(
                "INSERT INTO error_logs VALUES (?1, ?2, ?3, ?4, 'e', 'b', 'http', 'B', 'x', 0, 0)",
                rusqlite::params![id, env, user, workflow],
            )
            .unwrap();
        };
        log(&conn, "l0", "development", "u1", "w1");
        log(&conn, "l1", "development", "u1", "w2");
        log(&conn, "l2", "production", "u1", "w1");
        migrate(&mut conn).unwrap();
        let tally = |conn: &Connection, env: &str, kind: &str, key: &str| -> Option<i64> {
            conn.query_row(
                "SELECT n FROM error_log_tallies WHERE env = ?1 AND kind = ?2 AND key = ?3",
                [env, kind, key],
                |r| r.get(0),
            )
            .optional()
            .unwrap()
        };
        // Counted from the logs already there, per environment.
        assert_eq!(tally(&conn, "development", "user", "u1"), Some(2));
        assert_eq!(tally(&conn, "development", "workflow", "w1"), Some(1));
        assert_eq!(tally(&conn, "production", "workflow", "w1"), Some(1));
        // Kept by the triggers from then on; a tally that reaches zero is gone.
        log(&conn, "l3", "development", "u2", "w2");
        assert_eq!(tally(&conn, "development", "workflow", "w2"), Some(2));
        assert_eq!(tally(&conn, "development", "user", "u2"), Some(1));
        conn.execute(
            "DELETE FROM error_logs WHERE env = 'development' AND user_id = 'u1'",
            [],
        )
        .unwrap();
        assert_eq!(tally(&conn, "development", "user", "u1"), None);
        assert_eq!(tally(&conn, "development", "workflow", "w1"), None);
        assert_eq!(tally(&conn, "development", "workflow", "w2"), Some(1));
        assert_eq!(tally(&conn, "production", "user", "u1"), Some(1));
    }
}
