//! Backups through the real binary: a copy taken under a write burst holds every write
//! acknowledged before it began, verifies, restores into a fresh directory and serves; restore
//! refuses a running server's database and a backup whose key is wrong.

use crate::binary::{outcome, BIN};
use crate::harness::{count, open_db, Server};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

fn ingot(args: &[&str]) -> (bool, String) {
    outcome(Command::new(BIN).args(args))
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_backup_under_writes_verifies_restores_and_serves_with_every_acknowledged_write() {
    let s = Server::start();
    let db = s.db_path();
    let dir = tempfile::tempdir().unwrap();
    let (copy, key_copy) = (dir.path().join("copy.db"), dir.path().join("copy.key"));
    s.post(
        &format!("/users/{}/credentials", s.create_user("sealed")),
        json!({ "type": "apiKey", "data": { "apiKey": "secret-in-backup" } }),
    );

    // A burst of creates while the backup is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (stop, acked, base, key) = (stop.clone(), acked.clone(), s.base.clone(), s.key.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let r = ureq::post(&format!("{base}/users"))
                    .set("Authorization", &format!("Bearer {key}"))
                    .send_json(json!({ "username": format!("burst-{n}") }));
                assert_eq!(r.unwrap().status(), 200);
                n += 1;
                acked.store(n, Ordering::SeqCst);
            }
        })
    };
    while acked.load(Ordering::SeqCst) < 20 {
        std::thread::yield_now();
    }
    let before = acked.load(Ordering::SeqCst);
    let (ok, text) = ingot(&[
        "backup",
        copy.to_str().unwrap(),
        "--key-out",
        key_copy.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    assert!(
        text.contains("consistent copy") && text.contains("store it apart"),
        "{text}"
    );
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    assert_eq!((mode(&copy), mode(&key_copy)), (0o600, 0o600));

    // Every user acknowledged before the backup began is in it; no secret is in it in plain text.
    let conn = open_db(&copy);
    let burst = count(&conn, "SELECT count(*) FROM users WHERE username LIKE 'burst-%'") as usize;
    assert!(
        burst >= before,
        "{burst} burst users in the backup, {before} acknowledged before it began"
    );
    drop(conn);
    assert!(!crate::harness::file_contains(&copy, b"secret-in-backup"));

    let (ok, text) = ingot(&["verify", copy.to_str().unwrap(), "--key", key_copy.to_str().unwrap()]);
    assert!(
        ok && text.contains("integrity ok") && text.contains("secrets opened"),
        "{text}"
    );
    let wrong = dir.path().join("wrong.key");
    ingot::crypto::Keyring::new(vec![ingot::crypto::MasterKey::generate()])
        .write_file(&wrong)
        .unwrap();
    let (ok, text) = ingot(&["verify", copy.to_str().unwrap(), "--key", wrong.to_str().unwrap()]);
    assert!(!ok && text.contains("did not open"), "a wrong key is reported: {text}");

    // Restore into a fresh directory with the key beside it, and serve from it.
    let fresh = tempfile::tempdir().unwrap();
    let restored = fresh.path().join("ingot.db");
    std::fs::copy(&key_copy, fresh.path().join("ingot.db.key")).unwrap();
    let (ok, text) = ingot(&["restore", copy.to_str().unwrap(), "--db", restored.to_str().unwrap()]);
    assert!(ok, "{text}");
    let mut config = crate::harness::config_for(fresh.path());
    config.db = restored.clone();
    let back = Server::start_with_key(fresh, config, &s.key);
    assert_eq!(back.get("/users/sealed").status, 200);
    let listed = back.get("/users?limit=1000&q=burst-").json["data"]
        .as_array()
        .unwrap()
        .len();
    assert!(listed >= before);
    // The restored credential still opens inside a run's reach: its sealed data verifies.
    let id = back.get("/users/sealed").json["userId"].as_str().unwrap().to_string();
    assert_eq!(
        back.get(&format!("/users/{id}/credentials")).json["data"][0]["type"],
        "apiKey"
    );
}

#[test]
fn restore_refuses_a_running_servers_database_and_a_backup_its_key_cannot_open() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    let (ok, text) = ingot(&["backup", copy.to_str().unwrap(), "--db", s.db_path().to_str().unwrap()]);
    assert!(ok, "{text}");
    let (ok, text) = ingot(&["restore", copy.to_str().unwrap(), "--db", s.db_path().to_str().unwrap()]);
    assert!(!ok && text.contains("a server is running"), "{text}");
    // Another directory whose key is not the backup's.
    let mut other = Server::start();
    let other_db = other.db_path();
    other.stop();
    let (ok, text) = ingot(&["restore", copy.to_str().unwrap(), "--db", other_db.to_str().unwrap()]);
    assert!(!ok && text.contains("do not open"), "{text}");
    assert!(
        !ingot(&["backup", copy.to_str().unwrap(), "--db", s.db_path().to_str().unwrap()]).0,
        "never overwrites"
    );
}

#[test]
fn admin_backup_writes_timestamped_copies_and_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().to_path_buf();
    let s = Server::start_configured(move |c| {
        c.backup_dir = backups;
        c.backup_keep = 2;
    });
    let mut written = Vec::new();
    for _ in 0..3 {
        let r = s.post("/admin/backup", json!({}));
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.json["masterKeyIncluded"], false);
        written.push(r.json["path"].as_str().unwrap().to_string());
        s.app().clock.advance(1000);
    }
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(!left.contains(&written[0]) && left.contains(&written[2]));
    let user_token = s.token(&s.create_user("not-an-operator"));
    assert_eq!(
        s.as_user(&user_token, "POST", "/admin/backup", Some(&json!({}))).status,
        401
    );
}
