//! The real binary: first start prints a working key; `--help`; `keys` commands; SIGTERM;
//! and `kill -9` in the middle of a burst of creates loses no acknowledged write.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_ingot");

/// A child process that gets SIGKILL when the test is done with it, or fails.
pub(crate) struct Killed(pub std::process::Child);

impl Killed {
    pub fn kill_9(&mut self) {
        let _ = self.0.kill(); // SIGKILL
        let _ = self.0.wait();
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// A spawned `ingot serve`, with its address and (on first start) its printed key.
pub(crate) struct Spawned {
    pub child: Child,
    pub base: String,
    pub key: Option<String>,
    /// The lines read while starting (up to the address, and the key's if one was printed).
    pub seen: Vec<String>,
    lines: mpsc::Receiver<String>,
}

fn spawn(db: &Path) -> Spawned {
    spawn_with(db, &[])
}

pub(crate) fn spawn_with(db: &Path, vars: &[(&str, &str)]) -> Spawned {
    spawn_command(Command::new(BIN), db, vars)
}

/// Starts `ingot serve` through `command` (the binary itself, or a wrapper that runs it).
pub(crate) fn spawn_command(mut command: Command, db: &Path, vars: &[(&str, &str)]) -> Spawned {
    let mut child = command
        .envs(vars.iter().copied())
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(db)
        .env_remove("INGOT_MASTER_KEY")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let base = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the server printed its address");
        let addr = line.strip_prefix("ingot listening on ").map(|a| a.trim().to_string());
        seen.push(line);
        if let Some(addr) = addr {
            break addr;
        }
    };
    // The key, if one was made, is printed right after the address line.
    let mut key = None;
    if let Ok(next) = lines.recv_timeout(Duration::from_millis(500)) {
        let banner = next.contains("development API key");
        seen.push(next);
        if banner {
            let keyline = lines.recv_timeout(Duration::from_secs(5)).unwrap();
            key = keyline.trim().strip_prefix("INGOT_DEV_KEY=").map(str::to_string);
            seen.push(keyline);
        }
    }
    Spawned {
        child,
        base,
        key,
        seen,
        lines,
    }
}

pub(crate) fn call(base: &str, key: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let rq = ureq::request(method, &format!("{base}{path}")).set("Authorization", &format!("Bearer {key}"));
    let res = match body {
        Some(b) => rq.send_string(&b.to_string()),
        None => rq.call(),
    };
    match res {
        Ok(r) | Err(ureq::Error::Status(_, r)) => (r.status(), r.into_json().unwrap_or(Value::Null)),
        Err(e) => (0, json!({ "transport": e.to_string() })),
    }
}

/// Creates `integration` and a user named `username`, and installs it for them; returns
/// (user id, first workflow id).
fn install(base: &str, key: &str, integration: Value, username: &str) -> (String, String) {
    let id = |(status, body): (u16, Value), field: &str| -> String {
        assert_eq!(status, 200, "{body}");
        body[field].as_str().unwrap().to_string()
    };
    let iid = id(
        call(base, key, "POST", "/integrations", Some(integration)),
        "integrationId",
    );
    let user = id(
        call(base, key, "POST", "/users", Some(json!({ "username": username }))),
        "userId",
    );
    let (status, body) = call(
        base,
        key,
        "POST",
        &format!("/users/{user}/integrations/{iid}/install"),
        Some(json!({})),
    );
    assert_eq!(status, 200, "{body}");
    (user, body["data"][0]["workflowId"].as_str().unwrap().to_string())
}

/// Runs `cmd` (an `ingot` command, maybe behind a wrapper) without the caller's database or key
/// settings; answers whether it succeeded and what it printed (stdout, then stderr).
pub(crate) fn outcome(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .env_remove("INGOT_DB")
        .env_remove("INGOT_MASTER_KEY")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

pub(crate) fn ingot(args: &[&str], db: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .arg("--db")
        .arg(db)
        .env_remove("INGOT_MASTER_KEY")
        .output()
        .unwrap()
}

#[test]
fn help_lists_every_command_and_flag() {
    let top = Command::new(BIN).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&top.stdout);
    for word in ["serve", "keys"] {
        assert!(text.contains(word), "--help lacks {word}: {text}");
    }
    let serve =
        String::from_utf8_lossy(&Command::new(BIN).args(["serve", "--help"]).output().unwrap().stdout).to_string();
    for word in ["--listen", "--db", "INGOT_LISTEN", "INGOT_DB"] {
        assert!(serve.contains(word), "serve --help lacks {word}: {serve}");
    }
    let keys =
        String::from_utf8_lossy(&Command::new(BIN).args(["keys", "--help"]).output().unwrap().stdout).to_string();
    for word in [
        "create",
        "list",
        "revoke",
        "rotate-signing",
        "rotate-request-signing",
        "rotate-master",
    ] {
        assert!(keys.contains(word), "keys --help lacks {word}: {keys}");
    }
}

/// Whoever reads the address line may signal at once (a service manager, a test, an operator's
/// script): the handler must be in place before it is printed. The deb test once sent SIGTERM in
/// the few microseconds between the banner and the handler, and the server died of the signal.
/// This is a race, so it is tried several times; it cannot fail when the order is right.
#[test]
fn sigterm_the_moment_the_address_is_printed_still_stops_cleanly() {
    for round in 0..8 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--db"])
            .arg(dir.path().join("ingot.db"))
            .env_remove("INGOT_MASTER_KEY")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while !line.starts_with("ingot listening on ") {
            line.clear();
            if stderr.read_line(&mut line).unwrap() == 0 {
                panic!("round {round}: the server ended before printing its address");
            }
        }
        // SIGTERM right away, without reading the key lines that follow.
        let pid = child.id() as libc::pid_t;
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "round {round}: SIGTERM on the address line: {status:?}"
        );
    }
}

/// A server's log lines go to stderr in batches (`ingot::logbuf`): none is lost by a clean
/// stop, and each comes before the stop's own lines, even those logged just before the signal.
#[test]
fn a_clean_stop_writes_every_access_line_before_it_says_it_is_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = spawn(&dir.path().join("ingot.db"));
    let ids: Vec<String> = (0..300).map(|i| format!("batched-{i}")).collect();
    let agent = ureq::agent();
    for id in &ids {
        let r = agent
            .get(&format!("{}/healthz", server.base))
            .set("X-Request-Id", id)
            .call()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // At once (no `kill` process to start), so that the last lines are still in the batch.
    assert_eq!(
        unsafe { libc::kill(server.child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    assert!(server.child.wait().unwrap().success());
    let lines: Vec<String> = server.lines.iter().collect();
    let stopping = lines
        .iter()
        .position(|l| l.starts_with("ingot stopping"))
        .unwrap_or_else(|| panic!("no stopping line: {lines:?}"));
    for id in &ids {
        let at = lines
            .iter()
            .position(|l| l.contains("ingot::access") && l.ends_with(&format!(" id={id}")))
            .unwrap_or_else(|| panic!("no access line for {id}"));
        assert!(at < stopping, "the access line for {id} came after the stopping line");
    }
}

#[test]
fn first_start_prints_a_development_key_that_works_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ingot.db");
    let mut server = spawn(&db);
    let key = server.key.clone().expect("first start prints a key");
    assert!(key.starts_with("ingot_dev_"), "{key}");
    let (status, body) = call(
        &server.base,
        &key,
        "POST",
        "/users",
        Some(json!({ "username": "first" })),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        dir.path().join("ingot.db.key").exists(),
        "the master key file sits beside the database"
    );

    // `keys` commands work beside the running server.
    let out = ingot(&["keys", "create", "--env", "production", "--name", "ci"], &db);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let prod = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(prod.starts_with("ingot_prod_"));
    assert_eq!(
        call(&server.base, &prod, "GET", "/users", None).1["data"],
        json!([]),
        "production sees no development users"
    );
    let list = String::from_utf8(ingot(&["keys", "list"], &db).stdout).unwrap();
    let prod_id = prod.split('_').nth(2).unwrap();
    assert!(
        list.contains(prod_id) && list.contains("production") && list.contains("ci"),
        "{list}"
    );
    assert!(
        !list.contains(&prod) && !list.contains(&key),
        "keys list must never show a key"
    );
    assert!(ingot(&["keys", "revoke", prod_id], &db).status.success());
    assert_eq!(call(&server.base, &prod, "GET", "/users", None).0, 401);
    let bad = ingot(&["keys", "create", "--env", "staging"], &db);
    assert!(!bad.status.success());

    Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "SIGTERM exit: {status:?}");
    // Read to the end of stderr: the reader thread may not have passed the last lines on yet.
    let rest: Vec<String> = server.lines.iter().collect();
    assert!(rest.iter().any(|l| l.contains("ingot stopped")), "{rest:?}");
    // Beyond the one-time banner (its curl example repeats the key), no log line carries it.
    let leaks: Vec<&String> = rest
        .iter()
        .filter(|l| l.contains(&key) && !l.trim_start().starts_with("try: curl"))
        .collect();
    assert!(leaks.is_empty(), "the key leaked into the log: {leaks:?}");
    assert!(
        rest.iter().any(|l| l.contains("ingot::access")),
        "control: access log lines were read"
    );

    // A second start prints no key, and the first key still works.
    let mut again = spawn(&db);
    assert!(again.key.is_none());
    assert_eq!(call(&again.base, &key, "GET", "/users/first", None).0, 200);
    again.child.kill().unwrap();
    let _ = again.child.wait();
}

#[test]
fn serve_makes_the_request_signing_key_at_first_start_and_the_cli_replaces_it_live() {
    use crate::signing::{leak_forms, stored_private_key};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ingot.db");
    let mut server = spawn_with(&db, &[("INGOT_LOG", "trace")]);
    // Made in the background, before any request asks for it. The lines start with those
    // read while starting: the edge's debug lines may come before the address.
    let mut lines = server.seen.clone();
    while !lines
        .iter()
        .any(|l: &String| l.contains("made the request-signing key"))
    {
        lines.push(
            server
                .lines
                .recv_timeout(Duration::from_secs(60))
                .expect("serve makes the request-signing key at first start"),
        );
    }
    let secrets = ingot::store::Secrets::load(&ingot::config::MasterKeySource::File(ingot::config::default_key_file(
        &db,
    )))
    .unwrap();
    let first_private = stored_private_key(&db, &secrets);
    let pem = |base: &str| {
        ureq::get(&format!("{base}/security/alloy_public_key.pem"))
            .call()
            .unwrap()
            .into_string()
            .unwrap()
    };
    let first = pem(&server.base);
    let out = ingot(&["keys", "rotate-request-signing"], &db);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("/security/alloy_public_key.pem"), "{said}");
    let second = pem(&server.base);
    assert_ne!(first, second, "the running server serves the replaced key");
    let second_private = stored_private_key(&db, &secrets);
    server.child.kill().unwrap();
    let _ = server.child.wait();
    lines.extend(server.lines.iter());
    assert!(
        lines.iter().any(|l| l.contains("TRACE") || l.contains("DEBUG")),
        "control: trace logging ran"
    );
    for form in leak_forms(&first_private)
        .into_iter()
        .chain(leak_forms(&second_private))
    {
        let form = String::from_utf8_lossy(&form).to_string();
        let leaks: Vec<&String> = lines.iter().filter(|l| l.contains(&form)).collect();
        assert!(leaks.is_empty(), "the request-signing key reached the log: {leaks:?}");
    }
}

#[test]
fn kill_9_during_a_burst_of_creates_loses_no_acknowledged_user() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ingot.db");
    let mut server = spawn(&db);
    let key = server.key.clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..6)
        .map(|t| {
            let (base, key, stop) = (server.base.clone(), key.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let (status, body) = call(
                        &base,
                        &key,
                        "POST",
                        "/users",
                        Some(json!({ "username": format!("w{t}-{i}") })),
                    );
                    match status {
                        200 => acked.push(body["userId"].as_str().unwrap().to_string()),
                        0 => break, // the server is gone
                        other => panic!("unexpected {other}: {body}"),
                    }
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    server.child.kill().unwrap(); // SIGKILL
    let _ = server.child.wait();
    stop.store(true, Ordering::SeqCst);
    let acked: Vec<String> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    assert!(
        acked.len() > 20,
        "the burst made too few users to mean anything: {}",
        acked.len()
    );

    let mut again = spawn(&db);
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| call(&again.base, &key, "GET", &format!("/users/{id}"), None).0 != 200)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged users lost: {missing:?}",
        missing.len(),
        acked.len()
    );
    again.child.kill().unwrap();
    let _ = again.child.wait();
}

#[test]
fn kill_9_with_runs_queued_loses_none_and_they_finish_after_restart() {
    let rx = crate::receiver::Receiver::start();
    rx.delay(150);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ingot.db");
    let one_worker = [("INGOT_WORKERS", "1")];
    let mut server = spawn_with(&db, &one_worker);
    let key = server.key.clone().unwrap();
    let base = server.base.clone();
    let integration = json!({ "name": "slow", "app": "a", "workflows": [{ "name": "w", "blocks": [{ "type": "http", "url": format!("{}/hit", rx.url) }] }] });
    let (user, wf) = install(&base, &key, integration, "q");
    let runs = 10;
    for _ in 0..runs {
        let (status, body) = call(
            &base,
            &key,
            "POST",
            "/run/workflow",
            Some(json!({ "userId": user, "workflowId": wf })),
        );
        assert_eq!(status, 200, "{body}");
    }
    // Kill while the first runs are being worked on and the rest are queued.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while rx.requests().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no run started");
        std::thread::sleep(Duration::from_millis(10));
    }
    server.child.kill().unwrap();
    let _ = server.child.wait();
    let before = rx.requests().len();
    assert!(before < runs, "the kill came too late to test anything ({before} done)");

    let mut again = spawn_with(&db, &one_worker);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let finished = loop {
        let (_, body) = call(
            &again.base,
            &key,
            "GET",
            &format!("/workflows/{wf}/logs?limit=30"),
            None,
        );
        let list = body["data"].as_array().unwrap().clone();
        if list.len() == runs && list.iter().all(|e| e["finished"] == true) {
            break list;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "queued runs did not finish after restart: {list:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(finished.iter().all(|e| e["status"] == "succeeded"), "{finished:?}");
    // Every run reached the receiver; at most the one in flight at the kill was sent twice.
    let sent = rx.requests().len();
    assert!((runs..=runs + 1).contains(&sent), "{sent} requests for {runs} runs");
    again.child.kill().unwrap();
    let _ = again.child.wait();
}

#[test]
fn kill_9_while_errors_are_delivered_loses_no_delivery_and_no_log_line_holds_a_secret() {
    use crate::peers::{Moto, WebhookPeer};
    let moto = Moto::start();
    let peer = WebhookPeer::start();
    let rx = crate::receiver::Receiver::start();
    rx.answer(500);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ingot.db");
    let vars = [
        ("INGOT_WORKERS", "2"),
        ("INGOT_RETRY_SCHEDULE", "0.1,0.1,0.2,0.2,0.3,0.5,1"),
        ("INGOT_LOG", "trace"),
    ];
    let mut server = spawn_with(&db, &vars);
    let key = server.key.clone().unwrap();
    let base = server.base.clone();
    let hook = call(
        &base,
        &key,
        "PUT",
        "/settings/logging/webhook",
        Some(json!({ "url": peer.hook_url() })),
    );
    let whsec = hook.1["secret"].as_str().unwrap().to_string();
    peer.control(json!({ "secrets": [whsec], "failFirst": 4 }));
    let eb = call(
        &base,
        &key,
        "PUT",
        "/settings/logging/eventbridge",
        Some(moto.settings(moto.secret())),
    );
    assert_eq!(eb.0, 200, "{}", eb.1);
    // The failing block calls a receiver with the user's credential in a header.
    let credential = format!("cred-{}", ingot::ids::hex(&ingot::ids::random_bytes(10)));
    let integration = json!({ "name": "crashy", "app": "a", "credentialType": "httpHeaderAuth", "workflows": [{ "name": "w", "blocks": [{ "type": "http", "name": "Call", "url": format!("{}/x", rx.url) }] }] });
    let (user, wf) = install(&base, &key, integration, "crash");
    call(
        &base,
        &key,
        "POST",
        &format!("/users/{user}/credentials"),
        Some(json!({ "type": "httpHeaderAuth", "data": { "fieldName": "X-Secret", "value": credential } })),
    );
    // The burst below counts on deliveries starting within it: let the request-signing key,
    // made in the background at first start, be ready first.
    ureq::get(&format!("{base}/security/alloy_public_key.pem"))
        .call()
        .unwrap();
    let attempted = || {
        let (_, d) = call(&base, &key, "GET", "/settings/logging/deliveries", None);
        d["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["attempts"].as_i64().unwrap_or(0) >= 1)
    };
    let (mut acked, mut after_attempt) = (0, None);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // SIGKILL in the middle of runs and deliveries: runs keep being queued until a delivery
    // attempt is on record, and five more after that.
    while after_attempt.is_none_or(|n| n < 5) {
        if call(
            &base,
            &key,
            "POST",
            "/run/workflow",
            Some(json!({ "userId": user, "workflowId": wf })),
        )
        .0 == 200
        {
            acked += 1;
        }
        after_attempt = match after_attempt {
            Some(n) => Some(n + 1),
            None if acked >= 5 && attempted() => Some(0),
            None => None,
        };
        assert!(
            std::time::Instant::now() < deadline && acked < 55,
            "no delivery attempt was recorded"
        );
    }
    server.child.kill().unwrap();
    let _ = server.child.wait();
    let mut lines: Vec<String> = server.lines.iter().collect();
    let mut again = spawn_with(&db, &vars);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let error_ids = loop {
        let (_, runs) = call(
            &again.base,
            &key,
            "GET",
            &format!("/workflows/{wf}/logs?limit=30"),
            None,
        );
        let (_, page2) = call(
            &again.base,
            &key,
            "GET",
            &format!("/workflows/{wf}/logs?limit=30&page=2"),
            None,
        );
        let all: Vec<Value> = runs["data"]
            .as_array()
            .unwrap()
            .iter()
            .chain(page2["data"].as_array().unwrap())
            .cloned()
            .collect();
        if all.len() == acked && all.iter().all(|e| e["finished"] == true) {
            let (_, logs) = call(&again.base, &key, "GET", "/logs?limit=100", None);
            break logs["notifications"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["_id"].as_str().unwrap().to_string())
                .collect::<std::collections::BTreeSet<_>>();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "runs did not finish after restart"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(error_ids.len(), acked, "one error log per acknowledged run");
    let mut on_queue = std::collections::BTreeSet::new();
    loop {
        for ev in moto.drain_queue() {
            on_queue.insert(ev["detail"]["_id"].as_str().unwrap().to_string());
        }
        let hooked = peer.accepted_ids();
        if error_ids.is_subset(&hooked) && error_ids.is_subset(&on_queue) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not every error was delivered: webhook {} of {}, eventbridge {} of {}",
            hooked.intersection(&error_ids).count(),
            error_ids.len(),
            on_queue.intersection(&error_ids).count(),
            error_ids.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(peer.state()["rejected"], json!([]));
    assert!(
        rx.requests()
            .iter()
            .all(|r| r.header("X-Secret") == Some(credential.as_str())),
        "control: the credential was sent"
    );
    again.child.kill().unwrap();
    let _ = again.child.wait();
    lines.extend(again.lines.iter());
    assert!(
        lines.iter().any(|l| l.contains("TRACE") || l.contains("DEBUG")),
        "control: the log ran at trace level"
    );
    for secret in [whsec.as_str(), &whsec[6..], moto.secret(), credential.as_str()] {
        let leaks: Vec<&String> = lines.iter().filter(|l| l.contains(secret)).collect();
        assert!(leaks.is_empty(), "a secret reached the log: {leaks:?}");
    }
    let secrets = ingot::store::Secrets::load(&ingot::config::MasterKeySource::File(ingot::config::default_key_file(
        &db,
    )))
    .unwrap();
    for form in crate::signing::leak_forms(&crate::signing::stored_private_key(&db, &secrets)) {
        let form = String::from_utf8_lossy(&form).to_string();
        let leaks: Vec<&String> = lines.iter().filter(|l| l.contains(&form)).collect();
        assert!(leaks.is_empty(), "the request-signing key reached the log: {leaks:?}");
    }
}

#[test]
fn a_connection_flood_past_the_fd_limit_is_survived_and_service_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ingot.db");
    // The real binary with 64 file descriptors: a few dozen connections exhaust them.
    let mut limited = Command::new("prlimit");
    limited.args(["--nofile=64:64", BIN]);
    let mut server = spawn_command(limited, &db, &[("INGOT_MAX_CONNECTIONS", "10000")]);
    let key = server.key.clone().unwrap();
    let addr = server.base.trim_start_matches("http://").to_string();
    assert_eq!(call(&server.base, &key, "GET", "/users", None).0, 200);
    let flood: Vec<std::net::TcpStream> = (0..150)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    assert!(flood.len() > 64, "only {} connections were made", flood.len());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let saw_emfile = loop {
        match server.lines.recv_timeout(Duration::from_millis(200)) {
            Ok(l) if l.contains("could not accept") || l.contains("could not start a connection") => break true,
            Ok(_) => {}
            Err(_) if std::time::Instant::now() > deadline => break false,
            Err(_) => {}
        }
    };
    assert!(saw_emfile, "the flood never reached the descriptor limit");
    drop(flood);
    // The listener is still accepting: normal service resumes by itself.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = call(&server.base, &key, "GET", "/users", None);
        if status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "service did not resume (last {status})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        call(
            &server.base,
            &key,
            "POST",
            "/users",
            Some(json!({ "username": "after-flood" }))
        )
        .0,
        200
    );
    server.child.kill().unwrap();
    let _ = server.child.wait();
}

#[test]
fn a_credential_that_cannot_be_a_header_never_reaches_a_log_line_even_at_trace() {
    let rx = crate::receiver::Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ingot.db");
    let mut server = spawn_with(&db, &[("INGOT_LOG", "trace"), ("INGOT_RETRY_SCHEDULE", "")]);
    let (base, key) = (server.base.clone(), server.key.clone().unwrap());
    let integration = json!({ "name": "leak", "app": "a", "credentialType": "httpHeaderAuth", "workflows": [{ "name": "w", "blocks": [{ "type": "http", "name": "Call", "url": format!("{}/x", rx.url) }] }] });
    let (user, wf) = install(&base, &key, integration, "leaky");
    // The API refuses such values; one stored before that rule is put straight into the file.
    let secrets = ingot::store::Secrets::load(&ingot::config::MasterKeySource::File(ingot::config::default_key_file(
        &db,
    )))
    .unwrap();
    let conn = ingot::store::open_connection(&db, ingot::config::SyncMode::Full).unwrap();
    for secret in ["nl-TraceS3cret-1\n", "cl\u{e9}-TraceS3cret-2"] {
        let data = serde_json::to_vec(&json!({ "fieldName": "X-Key", "value": secret })).unwrap();
        ingot::store::credentials::insert(
            &conn,
            &secrets,
            ingot::store::Env::Development,
            &user,
            "httpHeaderAuth",
            None,
            &data,
        )
        .unwrap();
        assert_eq!(
            call(
                &base,
                &key,
                "POST",
                "/run/workflow",
                Some(json!({ "userId": user, "workflowId": wf }))
            )
            .0,
            200
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while call(&base, &key, "GET", &format!("/workflows/{wf}/logs"), None).1["data"][0]["finished"] != true {
            assert!(std::time::Instant::now() < deadline, "the run did not finish");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    drop(conn);
    server.child.kill().unwrap();
    let _ = server.child.wait();
    let lines: Vec<String> = server.lines.try_iter().collect();
    assert!(
        lines.iter().any(|l| l.contains("TRACE") || l.contains("DEBUG")),
        "control: trace logging ran"
    );
    let leaks: Vec<&String> = lines.iter().filter(|l| l.contains("TraceS3cret")).collect();
    assert!(leaks.is_empty(), "a secret reached the log: {leaks:?}");
    assert!(rx.requests().is_empty(), "the bad header was never sent");
}

/// `INGOT_LOG_FORMAT=json`: every line a JSON object; a request's line has its method, route,
/// status, duration and request id, the id taken from `X-Request-Id` (or made) and answered.
#[test]
fn json_logs_are_one_object_per_line_with_the_request_id_answered_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ingot.db");
    // Killed when the test ends, pass or fail.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Killed(
        Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--db"])
            .arg(&db)
            .env("INGOT_LOG_FORMAT", "json")
            .env_remove("INGOT_MASTER_KEY")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (tx, lines) = mpsc::channel::<String>();
    let stderr = child.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen: Vec<Value> = Vec::new();
    let base = loop {
        let line = lines.recv_timeout(Duration::from_secs(60)).expect("a log line");
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line: {line:?}: {e}"));
        seen.push(v.clone());
        let from_main = v["target"] == "ingot::serve";
        if let Some(addr) = v["message"]
            .as_str()
            .and_then(|m| m.strip_prefix("listening on "))
            .filter(|_| from_main)
        {
            break addr.to_string();
        }
    };
    let key = ingot::admin::create_key(
        &ingot::config::Config::from_vars(|k| (k == "INGOT_DB").then(|| db.display().to_string())).unwrap(),
        ingot::store::Env::Development,
        "t",
    )
    .unwrap()
    .1;
    let r = ureq::get(&format!("{base}/users/someone"))
        .set("Authorization", &format!("Bearer {key}"))
        .set("X-Request-Id", "req-42")
        .call();
    let r = match r {
        Err(ureq::Error::Status(_, r)) | Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(r.status(), 404);
    assert_eq!(r.header("x-request-id"), Some("req-42"));
    let made = ureq::get(&format!("{base}/healthz")).call().unwrap();
    assert_eq!(
        made.header("x-request-id").map(str::len),
        Some(36),
        "a new id when none came"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let access = loop {
        let line = lines.recv_timeout(Duration::from_secs(10)).expect("an access line");
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line: {line:?}: {e}"));
        for field in ["time", "level", "target", "message"] {
            assert!(v.get(field).is_some(), "{field} in {v}");
        }
        if v["request_id"] == "req-42" {
            break v;
        }
        assert!(std::time::Instant::now() < deadline);
    };
    assert_eq!(access["method"], "GET");
    assert_eq!(
        access["route"], "GetUser",
        "the route, not the path (which may hold a username)"
    );
    assert_eq!(access["status"], 404);
    assert!(access["duration_us"].as_u64().is_some());
    assert!(!access.to_string().contains("someone"));
    assert!(
        seen.iter().all(|v| !v.to_string().contains("ingot_dev_")),
        "no key in a JSON line"
    );
}

/// The scheduling policy of each thread of process `pid` (field 41 of its `stat`).
fn thread_policies(pid: u32) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let Ok(stat) = std::fs::read_to_string(task.join("stat")) else {
            continue; // a thread that ended meanwhile
        };
        // The name, in parentheses, may hold spaces: count fields from the last ')', which
        // is followed by field 3.
        let (head, rest) = stat.rsplit_once(')').unwrap();
        let name = head.split_once('(').unwrap().1.to_string();
        let policy = rest.split_whitespace().nth(41 - 3).unwrap().parse().unwrap();
        out.push((name, policy));
    }
    out
}

#[test]
fn every_thread_of_the_server_runs_under_sched_batch() {
    const SCHED_BATCH: u32 = 3;
    let dir = tempfile::tempdir().unwrap();
    let server = spawn(&dir.path().join("ingot.db"));
    let key = server.key.clone().unwrap();
    // Killed also when an assert below fails.
    let child = Killed(server.child);
    // Connection threads exist only while there are connections: hold some open.
    let _conns: Vec<std::net::TcpStream> = (0..3)
        .map(|_| std::net::TcpStream::connect(server.base.trim_start_matches("http://")).unwrap())
        .collect();
    assert_eq!(call(&server.base, &key, "GET", "/users", None).0, 200);
    let policies = thread_policies(child.0.id());
    assert!(
        policies.len() >= 5,
        "control: the server's threads were read: {policies:?}"
    );
    let others: Vec<_> = policies.iter().filter(|(_, p)| *p != SCHED_BATCH).collect();
    assert!(others.is_empty(), "threads under another policy: {others:?}");
    // Control: this test's own process keeps the default policy (SCHED_OTHER, 0), so the
    // field read is the policy and not a constant.
    assert!(thread_policies(std::process::id()).iter().all(|(_, p)| *p == 0));
}

/// The process's thread count, from `/proc`.
fn threads_of(child: &Child) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a Threads: line")
}

#[test]
fn kept_alive_connections_waiting_for_their_next_request_hold_no_thread() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let spawned = spawn(&dir.path().join("ingot.db"));
    let addr = spawned.base.trim_start_matches("http://").to_string();
    let child = Killed(spawned.child);
    // Let the start-up threads (key making, delivery, engine) settle.
    std::thread::sleep(Duration::from_secs(2));
    let before = threads_of(&child.0);
    let mut conns = Vec::new();
    for _ in 0..64 {
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while !String::from_utf8_lossy(&got).contains("\"ok\"") {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "closed early");
            got.extend_from_slice(&buf[..n]);
        }
        conns.push(c);
    }
    let during = threads_of(&child.0);
    // Each connection is open and kept alive; with a thread per connection the count would
    // have grown by 64.
    assert!(
        during < before + 16,
        "{before} threads before, {during} with 64 idle connections"
    );
    drop(conns);
}
