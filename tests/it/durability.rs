//! The durability promises of the README, each against the running server: the writer commits
//! with `synchronous=FULL` in WAL mode, concurrent writes share one commit, a write that fails
//! in it rolls back alone, and no `200` is sent for a write whose commit did not happen.

use crate::harness::Server;
use serde_json::json;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `PRAGMA name` read on the writer's own connection.
fn writer_pragma<T: rusqlite::types::FromSql + Send + 'static>(s: &Server, name: &'static str) -> T {
    s.app()
        .store
        .write(move |c| Ok(c.pragma_query_value(None, name, |r| r.get::<_, T>(0))?))
        .unwrap()
}

/// The writer held inside one write, so that writes sent meanwhile queue behind it.
struct HeldWriter {
    release: mpsc::Sender<()>,
    blocker: std::thread::JoinHandle<Result<(), ingot::store::StoreError>>,
}

impl HeldWriter {
    fn hold(app: &std::sync::Arc<ingot::App>) -> HeldWriter {
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let (release, release_rx) = mpsc::channel::<()>();
        let app = app.clone();
        let blocker = std::thread::spawn(move || {
            app.store.write(move |_| {
                started_tx.send(()).unwrap();
                release_rx.recv().ok();
                Ok(())
            })
        });
        started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        HeldWriter { release, blocker }
    }

    /// Waits (bounded) until `writes` are queued, lets the writer go, and answers the commit
    /// count from just before.
    fn release_once_queued(self, app: &ingot::App, writes: usize) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        while app.store.stats.queued() < writes {
            assert!(
                Instant::now() < deadline,
                "only {} writes queued",
                app.store.stats.queued()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let before = app.store.stats.commits();
        self.release.send(()).unwrap();
        self.blocker.join().unwrap().unwrap();
        before
    }
}

#[test]
fn the_writer_commits_with_synchronous_full_in_wal_mode() {
    let s = Server::start();
    assert_eq!(writer_pragma::<i64>(&s, "synchronous"), 2, "synchronous=FULL");
    assert_eq!(writer_pragma::<String>(&s, "journal_mode"), "wal");
    // Control: the pragma read is the setting's, not a constant.
    let normal = Server::start_configured(|c| c.sync = ingot::config::SyncMode::Normal);
    assert_eq!(writer_pragma::<i64>(&normal, "synchronous"), 1);
}

/// Also: a request waiting for its commit gives its turn back (see `admission`). With one turn
/// and patience longer than the test, the forty could not all queue otherwise.
#[test]
fn concurrent_writes_waiting_for_the_writer_share_one_commit_and_give_back_their_turns() {
    let s = Server::start_configured(|c| {
        c.handler_turns = 1;
        c.handler_patience = Duration::from_secs(120);
    });
    let app = s.app().clone();
    // Hold the writer inside one write until every create below is queued behind it.
    let held = HeldWriter::hold(&app);
    const WRITES: usize = 40;
    let creates: Vec<_> = (0..WRITES)
        .map(|i| {
            let (base, key) = (s.base.clone(), s.key.clone());
            std::thread::spawn(move || {
                ureq::post(&format!("{base}/users"))
                    .set("Authorization", &format!("Bearer {key}"))
                    .send_string(&json!({ "username": format!("batched{i}") }).to_string())
                    .map(|r| r.status())
                    .unwrap_or(0)
            })
        })
        .collect();
    let before = held.release_once_queued(&app, WRITES);
    let statuses: Vec<u16> = creates.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(statuses.iter().all(|&c| c == 200), "{statuses:?}");
    let commits = app.store.stats.commits() - before;
    // The held write's own commit, one for the forty, and room for a background flush.
    assert!(
        (1..=3).contains(&commits),
        "{WRITES} queued writes took {commits} commits"
    );
    assert_eq!(s.get("/users?q=batched").json["data"].as_array().unwrap().len(), WRITES);
    assert_eq!(app.admission.impatient(), 0, "every request ran in its turn");
}

#[test]
fn a_write_is_answered_200_only_after_its_commit() {
    let mut s = Server::start();
    let stats = s.app().store.stats.clone();
    let before = stats.commits();
    assert_eq!(s.post("/users", json!({ "username": "counted" })).status, 200);
    assert!(stats.commits() > before, "the 200 came before any commit");

    // A commit that fails (as on a full disk) is never answered 200, and nothing of it stays.
    stats.fail_next_commits(1);
    let r = s.post("/users", json!({ "username": "never-committed" }));
    assert_eq!(r.status, 503, "{}", r.json);
    assert_eq!(s.get("/users/never-committed").status, 404);
    assert_eq!(s.post("/users", json!({ "username": "after" })).status, 200);
    s.restart();
    assert_eq!(s.get("/users/counted").status, 200);
    assert_eq!(s.get("/users/after").status, 200);
    assert_eq!(s.get("/users/never-committed").status, 404);
}

/// Requests on many connections that each wait for a commit wait together, whatever the
/// number of cores: a thread that waits on a commit hands its connections to another first.
#[test]
fn creates_on_more_connections_than_cores_all_wait_in_one_commit() {
    let s = Server::start();
    let app = s.app().clone();
    let held = HeldWriter::hold(&app);
    const WRITES: usize = 12;
    std::thread::scope(|scope| {
        let creates: Vec<_> = (0..WRITES)
            .map(|i| {
                let s = &s;
                scope.spawn(move || s.post("/users", serde_json::json!({ "username": format!("together-{i}") })))
            })
            .collect();
        let before = held.release_once_queued(&app, WRITES);
        for c in creates {
            assert_eq!(c.join().unwrap().status, 200);
        }
        assert!(
            app.store.stats.commits() - before <= 3,
            "the creates did not share a commit"
        );
    });
}

/// Writes that fail, or panic, after changing rows leave none of those rows, and the writes
/// they share a commit with are kept: each write runs inside its own savepoint.
#[test]
fn a_write_that_fails_or_panics_in_a_shared_commit_leaves_nothing_and_the_others_commit() {
    use ingot::store::{error_logs, Env, StoreError};
    let s = Server::start();
    let app = s.app().clone();
    let held = HeldWriter::hold(&app);
    const WRITES: usize = 12;
    let writes: Vec<_> = (0..WRITES)
        .map(|i| {
            let app = app.clone();
            std::thread::spawn(move || {
                app.store.write(move |c| {
                    let log = error_logs::new_log(Env::Development, "u", "w", "e", "b", "http", &format!("n{i}"), "x");
                    error_logs::insert(c, &log)?;
                    match i % 3 {
                        0 => Err(StoreError::Invalid("refused after writing".into())),
                        1 => panic!("a write panicked after writing"),
                        _ => Ok(()),
                    }
                })
            })
        })
        .collect();
    let before = held.release_once_queued(&app, WRITES);
    let results: Vec<_> = writes.into_iter().map(|t| t.join().unwrap()).collect();
    for (i, r) in results.iter().enumerate() {
        match i % 3 {
            0 => assert!(matches!(r, Err(StoreError::Invalid(_))), "{i}: {r:?}"),
            1 => assert!(matches!(r, Err(StoreError::Unavailable(_))), "{i}: {r:?}"),
            _ => assert!(r.is_ok(), "{i}: {r:?}"),
        }
    }
    assert!(
        app.store.stats.commits() - before <= 3,
        "the writes did not share a commit"
    );
    let kept: Vec<String> = app
        .store
        .write(|c| {
            let mut st = c.prepare("SELECT block_name FROM error_logs ORDER BY block_name")?;
            let names = st
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(names)
        })
        .unwrap();
    let wanted: Vec<String> = {
        let mut w: Vec<String> = (0..WRITES).filter(|i| i % 3 == 2).map(|i| format!("n{i}")).collect();
        w.sort();
        w
    };
    assert_eq!(kept, wanted);
    // The kept tallies agree with the kept rows.
    assert_eq!(
        s.get("/logs?workflowId=w").json["pagination"]["totalItems"],
        wanted.len()
    );
}
