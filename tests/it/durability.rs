//! The durability promises of the README, each against the running server: the writer commits
//! with `synchronous=FULL` in WAL mode, concurrent writes share one commit, and no `200` is
//! sent for a write whose commit did not happen.

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
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let blocker = {
        let app = app.clone();
        std::thread::spawn(move || {
            app.store.write(move |_| {
                started_tx.send(()).unwrap();
                release_rx.recv().ok();
                Ok(())
            })
        })
    };
    started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
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
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.store.stats.queued() < WRITES {
        assert!(
            Instant::now() < deadline,
            "only {} writes queued",
            app.store.stats.queued()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let before = app.store.stats.commits();
    release_tx.send(()).unwrap();
    blocker.join().unwrap().unwrap();
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
