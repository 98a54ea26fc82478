//! Outbound calls never reach a cloud metadata service: a fake one answers on 169.254.169.254
//! inside a network namespace of the test's own (with a name for it in its own `/etc/hosts`),
//! and every way of pointing a block, a webhook or EventBridge at it is refused, while the
//! fake itself is shown to be reachable. Production also refuses internal addresses unless
//! `INGOT_OUTBOUND_ALLOW` lists them.

use crate::harness::Server;
use crate::receiver::Receiver;
use serde_json::{json, Value};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const IN_NETNS: &str = "INGOT_TEST_IN_NETNS";

/// Runs test `name` again inside a new network and mount namespace (as root, as CI runs).
/// Returns true when the caller is already inside and should do the work.
fn inside_namespace(name: &str) -> bool {
    if std::env::var_os(IN_NETNS).is_some() {
        return true;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["--net", "--mount", "--"])
        .arg(exe)
        .args(["--exact", name, "--nocapture", "--test-threads", "1"])
        .env(IN_NETNS, "1")
        .output()
        .expect("unshare runs (the tests run as root)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "inside the namespace:\n{text}");
    assert!(
        text.contains("1 passed"),
        "the test did not run inside the namespace:\n{text}"
    );
    false
}

fn sh(cmd: &str) {
    let st = Command::new("sh").args(["-c", cmd]).status().unwrap();
    assert!(st.success(), "{cmd}");
}

/// The fake metadata service on 169.254.169.254:80; counts what reaches it.
fn fake_metadata() -> Arc<AtomicUsize> {
    // No dummy-interface driver on every kernel: the namespace's own loopback carries the address.
    sh("ip link set lo up && ip addr add 169.254.169.254/32 dev lo");
    // Under target/ (one small file a run, gone with `cargo clean`), not the machine's /tmp: it
    // stays mounted until this namespace's process exits, so nothing here can remove it.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("ingot-hosts-{}", std::process::id()));
    std::fs::write(&dir, "127.0.0.1 localhost\n169.254.169.254 metadata.test\n").unwrap();
    sh(&format!("mount --bind {} /etc/hosts", dir.display()));
    let server = tiny_http::Server::http("169.254.169.254:80").unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for rq in server.incoming_requests() {
            h.fetch_add(1, Ordering::SeqCst);
            let _ = rq.respond(tiny_http::Response::from_string("ami-secret-instance-credentials"));
        }
    });
    hits
}

/// A loopback server that redirects every request to the metadata service.
fn redirector() -> String {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!("http://{}", server.server_addr().to_ip().unwrap());
    std::thread::spawn(move || {
        for rq in server.incoming_requests() {
            let to = tiny_http::Header::from_bytes("Location", "http://169.254.169.254/latest/meta-data").unwrap();
            let _ = rq.respond(tiny_http::Response::empty(302).with_header(to));
        }
    });
    url
}

/// Runs a one-block workflow calling `url` for a new user; returns the finished execution.
fn run_block(s: &Server, n: usize, url: &str) -> Value {
    let iid = s.create_integration(json!({ "name": format!("ssrf{n}"), "app": "a", "workflows": [
        { "name": "w", "blocks": [{ "type": "http", "name": "Call", "url": url }] }] }));
    let user = s.create_user(&format!("ssrf-user{n}"));
    let wf = s.install(&user, &iid).remove(0);
    assert_eq!(
        s.post("/run/workflow", json!({ "userId": user, "workflowId": wf }))
            .status,
        200
    );
    s.wait_for_runs(&wf, 1).remove(0)
}

#[test]
fn no_block_webhook_or_eventbridge_call_reaches_the_metadata_service() {
    if !inside_namespace("ssrf::no_block_webhook_or_eventbridge_call_reaches_the_metadata_service") {
        return;
    }
    let hits = fake_metadata();
    // Control: the fake answers when asked directly, by address and by name.
    let direct = ureq::get("http://metadata.test/latest")
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(direct.contains("ami-secret"));
    assert_eq!(hits.swap(0, Ordering::SeqCst), 1);

    let s = Server::start_configured(|c| c.retry_schedule = Vec::new());
    let redirect = redirector();
    let urls = [
        "http://169.254.169.254/latest/meta-data".to_string(),
        "http://2852039166/latest".into(),
        "http://0xA9FEA9FE/latest".into(),
        "http://0251.0376.0251.0376/latest".into(),
        "http://169.254.43518/latest".into(),
        "http://[::ffff:169.254.169.254]/latest".into(),
        "http://[::ffff:a9fe:a9fe]/latest".into(),
        "http://metadata.test/latest".into(),
        "http://metadata.test:80/latest".into(),
        format!("{redirect}/go"),
    ];
    for (n, url) in urls.iter().enumerate() {
        let ex = run_block(&s, n, url);
        assert_eq!(ex["status"], "failed", "{url}: {ex}");
        let text = ex.to_string();
        assert!(!text.contains("ami-secret"), "{url} read the metadata: {text}");
        assert!(text.contains("refused"), "{url}: {text}");
    }
    // Run data cannot choose the host.
    let r = s.post(
        "/integrations",
        json!({ "name": "hosted", "app": "a", "workflows": [
        { "name": "w", "blocks": [{ "type": "http", "url": "http://{{data.host}}/x" }] }] }),
    );
    assert_eq!(r.status, 422, "{}", r.json);
    assert!(r.message().contains("host"), "{}", r.message());

    // A webhook or EventBridge endpoint named for the metadata host is never called.
    for url in ["http://169.254.169.254/hook", "http://[::ffff:169.254.169.254]/hook"] {
        let r = s.req("PUT", "/settings/logging/webhook", Some(&json!({ "url": url })));
        assert_eq!(r.status, 422, "{url}: {}", r.json);
    }
    let r = s.req(
        "PUT",
        "/settings/logging/webhook",
        Some(&json!({ "url": "http://metadata.test/hook" })),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    let r = s.req(
        "PUT",
        "/settings/logging/eventbridge",
        Some(&json!({ "accessKeyId": "AKIAEXAMPLE",
        "secretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "region": "us-east-1",
        "eventBusName": "b", "endpoint": "http://metadata.test/" })),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    run_block(&s, 99, "http://127.0.0.1:9/refused");
    let deadline = Instant::now() + Duration::from_secs(30);
    let failed = loop {
        let d = s.get("/settings/logging/deliveries?status=failed").json["data"].clone();
        if d.as_array().unwrap().len() == 2 {
            break d;
        }
        assert!(Instant::now() < deadline, "deliveries did not fail: {d}");
        std::thread::sleep(Duration::from_millis(50));
    };
    for d in failed.as_array().unwrap() {
        assert!(d["lastError"].as_str().unwrap().contains("refused"), "{d}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "a call reached the metadata service");
}

#[test]
fn production_refuses_internal_addresses_unless_they_are_allowed() {
    let rx = Receiver::start();
    for (allow, expected) in [("", "failed"), ("127.0.0.0/8", "succeeded")] {
        let s = Server::start_configured(|c| c.outbound_allow = ingot::outbound::parse_allow(allow).unwrap());
        let prod = s.new_key(ingot::store::Env::Production);
        let integration = json!({ "name": "p", "app": "a", "workflows": [
            { "name": "w", "blocks": [{ "type": "http", "url": format!("{}/p", rx.url) }] }] });
        let (user, wf) = s.installed_as(&prod, integration, "p", None);
        let ex = s.run_and_wait_as(&prod, &user, &wf, json!({}));
        assert_eq!(ex["status"], expected, "allow {allow:?}: {ex}");
        // The production webhook is refused a loopback URL just the same.
        let hook = s.req_as(
            &prod,
            "PUT",
            "/settings/logging/webhook",
            Some(&json!({ "url": format!("{}/h", rx.url) })),
        );
        assert_eq!(hook.status, if allow.is_empty() { 422 } else { 200 }, "{}", hook.json);
    }
}
