//! The appliance's own files and failures: private database files, key files that keep their
//! owner and mode, a full disk answered 507, start-up errors that name the path, and a stop
//! that ends within systemd's stop timeout.

use crate::harness::Server;
use ingot::config::MasterKeySource;
use serde_json::json;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

#[test]
fn the_database_and_its_wal_files_are_private() {
    let s = Server::start();
    s.create_user("private");
    let db = s.db_path();
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", db.display());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{path} is {mode:o}");
    }
}

#[test]
fn rotating_the_master_key_keeps_the_key_files_owner_and_mode() {
    let s = Server::start();
    let MasterKeySource::File(key_file) = s.config.master_key.clone() else {
        panic!()
    };
    // As a package install would have it: the service's user owns it, its group may read it.
    std::os::unix::fs::chown(&key_file, Some(4242), Some(4343)).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o640)).unwrap();
    ingot::admin::rotate_master(&s.config).unwrap();
    let meta = std::fs::metadata(&key_file).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (4242, 4343));
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
}

#[test]
fn a_full_disk_is_507_saying_so_and_writes_resume_when_there_is_room() {
    let s = Server::start();
    // The database may not grow past its current size: SQLite answers SQLITE_FULL, as on a
    // full disk.
    let store = &s.app().store;
    store
        .write(|c| {
            let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            c.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
            Ok(())
        })
        .unwrap();
    let mut full = None;
    for i in 0..2000 {
        let r = s.post(
            "/users",
            json!({ "username": format!("filler-{i}-{}", "x".repeat(200)) }),
        );
        if r.status != 200 {
            full = Some(r);
            break;
        }
    }
    let r = full.expect("the database never filled up");
    assert_eq!(r.status, 507, "{}", r.json);
    assert!(r.message().contains("disk is full"), "{}", r.message());
    store
        .write(|c| Ok(c.query_row("PRAGMA max_page_count = 1073741823", [], |_| Ok(()))?))
        .unwrap();
    assert_eq!(s.post("/users", json!({ "username": "room-again" })).status, 200);
}

#[test]
fn a_start_up_failure_names_the_path_and_the_os_error() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("plain-file");
    std::fs::write(&not_a_dir, "x").unwrap();
    let mut config = crate::harness::config_for(dir.path());
    config.set_db(not_a_dir.join("ingot.db"));
    let e = ingot::start(config, std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .err()
        .expect("a database under a plain file cannot start");
    let text = format!("{e:#}");
    assert!(text.contains(&not_a_dir.display().to_string()), "{text}");
    assert!(text.contains("(os error"), "{text}");
}

#[test]
fn sigterm_with_a_slow_client_in_flight_exits_within_the_stop_timeout() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ingot"))
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(dir.path().join("ingot.db"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
    let addr = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(a) = line.strip_prefix("ingot listening on http://") {
            break a.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    // A request whose body never finishes arriving (large enough that the handler, not the
    // connection's parser, is reading it: the request is in flight).
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.write_all(b"POST /users HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{\"user")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let st = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    // packaging/ingot.service gives it TimeoutStopSec=30.
    let deadline = started + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "still running 30 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(slow);
}

/// `/readyz`: ready on a healthy server; 503 naming the reason when the database refuses a
/// write or the disk beside it is nearly full. `/healthz` stays a liveness check throughout.
#[test]
fn readyz_names_why_the_server_cannot_work_and_healthz_stays_live() {
    let s = crate::harness::Server::start();
    let r = s.call("GET", "/readyz", &[], None);
    assert_eq!(
        (r.status, r.json["status"].as_str()),
        (200, Some("ready")),
        "{}",
        r.json
    );
    // The next commits fail: the probe's write does, and readyz says so.
    s.app().store.stats.fail_next_commits(1);
    std::thread::sleep(std::time::Duration::from_millis(5100));
    let r = s.call("GET", "/readyz", &[], None);
    assert_eq!(r.status, 503, "{}", r.json);
    assert!(r.message().contains("cannot be written"), "{}", r.message());
    assert_eq!(s.call("GET", "/healthz", &[], None).status, 200);
    // A disk with less free space than the threshold.
    let full = crate::harness::Server::start_configured(|c| c.ready_min_free_mb = u64::MAX >> 21);
    let r = full.call("GET", "/readyz", &[], None);
    assert_eq!(r.status, 503);
    assert!(r.message().contains("nearly full"), "{}", r.message());
}

/// `/readyz` on a real filesystem failure: the database lives on an ext4 filesystem (a loop
/// device, mounted `errors=remount-ro` in a mount namespace of the server's own) that the kernel
/// then turns read-only after an error, as it would on a failing disk. Within the probe's
/// interval readyz answers 503 naming the database; `/healthz` stays live.
#[test]
fn readyz_goes_503_when_the_databases_filesystem_turns_read_only() {
    use crate::binary::{call, spawn_command, Killed, BIN};
    let dir = tempfile::tempdir().unwrap();
    let (image, mnt) = (dir.path().join("fs.img"), dir.path().join("mnt"));
    std::fs::create_dir(&mnt).unwrap();
    std::fs::File::create(&image).unwrap().set_len(64 << 20).unwrap();
    let made = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    // The mount lives and dies with the server's namespace; "$@" is ingot and its arguments.
    let mut wrapper = std::process::Command::new("unshare");
    wrapper
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount -o loop,errors=remount-ro '{}' '{}' && exec \"$@\"",
            image.display(),
            mnt.display()
        ))
        .args(["sh", BIN]);
    let server = spawn_command(wrapper, &mnt.join("ingot.db"), &[("INGOT_READY_MIN_FREE_MB", "1")]);
    let (base, key) = (server.base.clone(), server.key.clone().unwrap());
    let _server = Killed(server.child);
    let readyz = || call(&base, &key, "GET", "/readyz", None);
    assert_eq!(readyz().0, 200, "{}", readyz().1);

    // The kernel's own path for a filesystem error: ext4 remounts it read-only.
    let loops = std::process::Command::new("losetup")
        .arg("-j")
        .arg(&image)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&loops.stdout).to_string();
    let device = listing
        .split(':')
        .next()
        .and_then(|d| d.strip_prefix("/dev/"))
        .expect("the loop device");
    std::fs::write(format!("/sys/fs/ext4/{device}/trigger_fs_error"), "ingot readyz test").unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, body) = loop {
        let (status, body) = readyz();
        if status != 200 || Instant::now() > deadline {
            break (status, body);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(status, 503, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("the database cannot be written"),
        "{body}"
    );
    assert_eq!(call(&base, &key, "GET", "/healthz", None).0, 200);
}

/// The CLI on a service's database: it refuses to run as another user than the database's
/// owner (naming the user to run as) unless `--force`, works as the owner (`setpriv`), and
/// reads its settings from `--env-file`.
#[test]
fn the_cli_runs_as_the_databases_owner_and_reads_the_service_env_file() {
    use crate::binary::BIN;
    use std::os::unix::fs::PermissionsExt;
    let mut s = crate::harness::Server::start();
    let db = s.db_path();
    let dir = db.parent().unwrap().to_path_buf();
    s.stop();
    // The service's files belong to "nobody" (65534), as a package's would to "ingot".
    for p in [
        dir.clone(),
        db.clone(),
        dir.join("ingot.db.key"),
        dir.join("ingot.db-wal"),
        dir.join("ingot.db-shm"),
        dir.join("ingot.db.lock"),
    ] {
        if p.exists() {
            std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
        }
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let env_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        env_file.path(),
        format!("# the service's settings\nINGOT_DB={}\n", db.display()),
    )
    .unwrap();
    std::fs::set_permissions(env_file.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = |pre: &[&str], args: &[&str]| {
        let (prog, rest) = match pre.split_first() {
            Some((p, r)) => (*p, r.to_vec()),
            None => (BIN, vec![]),
        };
        let mut cmd = std::process::Command::new(prog);
        cmd.args(rest);
        if !pre.is_empty() {
            cmd.arg(BIN);
        }
        crate::binary::outcome(cmd.args(args))
    };
    let file = env_file.path().to_str().unwrap();
    // As root: refused, naming whom to run as.
    let (ok, text) = run(&[], &["keys", "list", "--env-file", file]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("belongs to user nobody") && text.contains("sudo -u nobody ingot keys list"),
        "{text}"
    );
    // As the owner, with the service's env file: it works, and finds the database by it.
    let as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
    let (ok, text) = run(&as_nobody, &["keys", "list", "--env-file", file]);
    assert!(ok, "{text}");
    assert!(text.contains("development (first start)"), "{text}");
    let (ok, text) = run(
        &as_nobody,
        &[
            "keys",
            "create",
            "--env",
            "production",
            "--name",
            "by-owner",
            "--env-file",
            file,
        ],
    );
    assert!(ok, "{text}");
    // --force lets root through (the operator's choice).
    let (ok, text) = run(&[], &["keys", "list", "--force", "--env-file", file]);
    assert!(ok && text.contains("by-owner"), "{text}");
    // The owner's writes left the files the owner's.
    use std::os::unix::fs::MetadataExt;
    for p in [db.clone(), dir.join("ingot.db.key")] {
        assert_eq!(std::fs::metadata(&p).unwrap().uid(), 65534, "{}", p.display());
    }
}

/// `/metrics` on its own listener, parsed with prometheus-client's parser: the counters move
/// with the traffic sent (requests by route and status, a 429, runs by outcome, delivery
/// attempts, group commits), and the gauges are there.
#[test]
fn metrics_parse_as_prometheus_text_and_move_with_the_traffic() {
    use serde_json::{json, Value};
    let s = crate::harness::Server::start_configured(|c| {
        c.metrics_listen = Some("127.0.0.1:0".into());
        c.retry_schedule = Vec::new();
    });
    assert_eq!(s.config.metrics_listen.as_deref(), Some("127.0.0.1:0"));
    let addr = s.handle.as_ref().unwrap().metrics_addr().expect("a metrics listener");
    let scrape = || -> Vec<Value> {
        let text = ureq::get(&format!("http://{addr}/metrics"))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        let mut child = std::process::Command::new(crate::peers::python())
            .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/parse_metrics.py"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "prometheus-client could not parse:\n{text}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let value = |samples: &[Value], name: &str, labels: Value| -> f64 {
        samples
            .iter()
            .filter(|s| s["name"] == name && labels.as_object().unwrap().iter().all(|(k, v)| &s["labels"][k] == v))
            .map(|s| s["value"].as_f64().unwrap())
            .sum()
    };
    let before = scrape();
    // Traffic: a 404, a run that fails into a refusing webhook, and a burst past a user's rate.
    let rx = crate::receiver::Receiver::start();
    rx.answer(500);
    s.req(
        "PUT",
        "/settings/logging/webhook",
        Some(&json!({ "url": format!("{}/hook", rx.url) })),
    );
    assert_eq!(s.get("/users/nobody-here").status, 404);
    let iid = s.create_integration(
        json!({ "name": "m", "app": "m", "workflows": [{ "name": "w", "blocks": [{ "type": "fail" }] }] }),
    );
    let user = s.create_user("metered");
    let wf = s.install(&user, &iid).remove(0);
    s.run_and_wait_as(&s.key, &user, &wf, json!({}));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while s.get("/settings/logging/deliveries?status=failed").json["data"]
        .as_array()
        .is_none_or(|d| d.is_empty())
    {
        assert!(std::time::Instant::now() < deadline, "the delivery never failed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let token = s.token(&user);
    let refused = (0..150)
        .filter(|_| s.as_user(&token, "GET", "/session", None).status == 429)
        .count();
    assert!(refused > 0, "the burst went past the user's rate (20/s, bursts of 60)");
    let after = scrape();
    let grew = |name: &str, labels: Value| value(&after, name, labels.clone()) - value(&before, name, labels);
    assert_eq!(
        grew("ingot_requests_total", json!({ "route": "GetUser", "status": "404" })),
        1.0
    );
    assert!(
        grew(
            "ingot_requests_total",
            json!({ "route": "CreateUser", "status": "200" })
        ) >= 1.0
    );
    assert!(grew("ingot_request_duration_seconds_count", json!({ "route": "GetUser" })) >= 1.0);
    assert_eq!(grew("ingot_rate_limited_total", json!({})), refused as f64);
    assert_eq!(
        grew("ingot_run_duration_seconds_count", json!({ "outcome": "failed" })),
        1.0
    );
    assert!(
        grew(
            "ingot_delivery_attempts_total",
            json!({ "target": "webhook", "result": "failed" })
        ) >= 1.0
    );
    assert!(grew("ingot_commit_batch_writes_count", json!({})) >= 5.0);
    assert!(grew("ingot_commit_seconds_sum", json!({})) > 0.0);
    for gauge in [
        "ingot_run_queue_depth",
        "ingot_deliveries_pending",
        "ingot_delivery_oldest_pending_seconds",
        "ingot_database_bytes",
        "ingot_wal_bytes",
        "ingot_open_connections",
    ] {
        assert!(after.iter().any(|s| s["name"] == gauge), "{gauge} is scraped");
    }
    assert!(value(&after, "ingot_database_bytes", json!({})) > 0.0);
    assert!(
        value(&after, "ingot_open_connections", json!({})) >= 1.0,
        "the harness keeps a connection open"
    );
    // Nothing but /metrics there, and the API's port has no /metrics.
    assert!(matches!(
        ureq::get(&format!("http://{addr}/users")).call(),
        Err(ureq::Error::Status(404, _))
    ));
    assert_eq!(s.call("GET", "/metrics", &[], None).status, 404);
}
