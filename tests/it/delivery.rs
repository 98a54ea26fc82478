//! Error delivery through the outbox to real peers: a standardwebhooks-verifying receiver and
//! a signature-checking moto EventBridge.

use crate::harness::epoch_ms;
use crate::harness::{db_contains, Server};
use crate::peers::{Moto, WebhookPeer};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A server whose deliveries retry quickly.
fn fast_server(schedule: &str) -> Server {
    let schedule = schedule.to_string();
    Server::start_configured(move |c| c.retry_schedule = ingot::delivery::parse_schedule(&schedule).unwrap())
}

/// Installs a one-block failing workflow for a new user; returns (user id, workflow id).
fn failing_workflow(s: &Server, username: &str) -> (String, String) {
    let integration = json!({ "name": format!("fails-{username}"), "app": "demo", "workflows": [{ "name": "boom", "blocks": [{ "type": "fail", "name": "Refuse", "message": "Upstream said no" }] }] });
    let iid = s.create_integration(integration);
    let user = s.create_user(username);
    let wf = s.install(&user, &iid).remove(0);
    (user, wf)
}

/// Runs the failing workflow `n` times and waits for the runs to finish.
fn fail_times(s: &Server, user: &str, wf: &str, n: usize) {
    let before = s.get(&format!("/workflows/{wf}/logs?limit=30")).json["data"]
        .as_array()
        .unwrap()
        .len();
    for _ in 0..n {
        assert_eq!(
            s.post("/run/workflow", json!({ "userId": user, "workflowId": wf }))
                .status,
            200
        );
    }
    s.wait_for_runs(wf, before + n);
}

/// Every error log of the environment, as `GET /logs` has them.
fn error_docs(s: &Server) -> Vec<Value> {
    s.get("/logs?limit=100&sortOrder=asc").json["notifications"]
        .as_array()
        .unwrap()
        .clone()
}

/// Configures the webhook at the peer; returns the secret.
fn webhook_to(s: &Server, peer: &WebhookPeer) -> String {
    let r = s.req(
        "PUT",
        "/settings/logging/webhook",
        Some(&json!({ "url": peer.hook_url(), "enabled": true })),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    let secret = r.json["secret"]
        .as_str()
        .expect("the first PUT shows the secret")
        .to_string();
    peer.control(json!({ "secrets": [secret] }));
    secret
}

#[test]
fn epoch_ms_reads_rfc3339_across_midnight() {
    assert_eq!(epoch_ms("1970-01-01T00:00:00.000Z"), 0);
    assert_eq!(epoch_ms("2021-09-30T12:46:10.562Z"), 1_633_005_970_562);
    assert_eq!(
        epoch_ms("2026-01-01T00:00:00.100Z") - epoch_ms("2025-12-31T23:59:59.900Z"),
        200
    );
}

fn deliveries(s: &Server, query: &str) -> Vec<Value> {
    let r = s.get(&format!("/settings/logging/deliveries{query}"));
    assert_eq!(r.status, 200, "{}", r.json);
    r.json["data"].as_array().unwrap().clone()
}

fn wait_deliveries(s: &Server, query: &str, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = deliveries(s, query);
        if done(&d) {
            return d;
        }
        assert!(Instant::now() < deadline, "deliveries never reached {what}: {d:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn webhook_settings_show_the_secret_once_and_refuse_bad_urls() {
    let s = Server::start();
    assert_eq!(s.get("/settings/logging/webhook").json["enabled"], false);
    let first = s.req(
        "PUT",
        "/settings/logging/webhook",
        Some(&json!({ "url": "http://127.0.0.1:9/hook" })),
    );
    assert_eq!(first.status, 200, "{}", first.json);
    let secret = first.json["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(first.json["enabled"], true);
    let got = s.get("/settings/logging/webhook");
    assert!(
        got.json.get("secret").is_none() && !got.json.to_string().contains(&secret[6..]),
        "{}",
        got.json
    );
    assert_eq!(
        got.json["secretHint"].as_str().unwrap(),
        format!("whsec_…{}", &secret[secret.len() - 4..])
    );
    let again = s.req("PUT", "/settings/logging/webhook", Some(&json!({ "enabled": false })));
    assert!(
        again.json.get("secret").is_none(),
        "only the first PUT shows the secret"
    );
    assert_eq!(
        (again.json["enabled"].as_bool(), again.json["url"].as_str()),
        (Some(false), Some("http://127.0.0.1:9/hook"))
    );
    for bad in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "ftp://example.com/",
        "nonsense",
    ] {
        let r = s.req("PUT", "/settings/logging/webhook", Some(&json!({ "url": bad })));
        assert_eq!(r.status, 422, "{bad}");
        assert!(r.message().contains("url"), "{}", r.message());
    }
    let prod = s.new_key(ingot::store::Env::Production);
    assert_eq!(
        s.req_as(&prod, "GET", "/settings/logging/webhook", None).json["url"],
        Value::Null,
        "settings are per environment"
    );
    let rotated = s.post("/settings/logging/webhook/rotate-secret", json!({}));
    assert_eq!(rotated.status, 200);
    assert_ne!(rotated.json["secret"].as_str().unwrap(), secret);
    assert_eq!(
        s.req_as(&prod, "POST", "/settings/logging/webhook/rotate-secret", None)
            .status,
        404
    );
}

#[test]
fn every_error_reaches_the_webhook_signed_with_the_same_id_on_retries() {
    let s = fast_server("0.05,0.05,0.05,0.05,0.05,0.05,0.05");
    let peer = WebhookPeer::start();
    webhook_to(&s, &peer);
    peer.control(json!({ "failFirst": 3 }));
    let (user, wf) = failing_workflow(&s, "hooked");
    fail_times(&s, &user, &wf, 5);
    let docs = error_docs(&s);
    assert_eq!(docs.len(), 5);
    let state = peer.wait_until("all five errors", |st| st["accepted"].as_array().unwrap().len() >= 5);
    assert_eq!(
        state["rejected"],
        json!([]),
        "every request verified with standardwebhooks"
    );
    let accepted = state["accepted"].as_array().unwrap();
    for doc in &docs {
        let got = accepted
            .iter()
            .find(|a| a["id"] == doc["_id"])
            .unwrap_or_else(|| panic!("{} never arrived", doc["_id"]));
        assert_eq!(got["body"], *doc, "the body is exactly the error log");
        let h = &got["headers"];
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["x-alloy-workflowid"], wf.as_str());
        assert_eq!(h["x-alloy-userid"], user.as_str());
        assert_eq!(
            (h["x-alloy-blockname"].as_str(), h["x-alloy-blocktype"].as_str()),
            (Some("Refuse"), Some("fail"))
        );
        assert_eq!(h["x-alloy-executionuuid"], doc["executionId"]);
    }
    // The three refused attempts were retried under the same webhook-id.
    let attempts: Vec<&str> = state["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(attempts.len(), 8);
    let mut ids: Vec<&str> = attempts.clone();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "retries reuse the id: {attempts:?}");
    let all = wait_deliveries(&s, "?target=webhook", "delivered", |d| {
        d.iter().all(|x| x["status"] == "delivered")
    });
    assert_eq!(all.len(), 5);
    let retried: Vec<&Value> = all.iter().filter(|d| d["attempts"].as_u64() > Some(1)).collect();
    assert!(!retried.is_empty());
    for d in retried {
        let log = d["attemptLog"].as_array().unwrap();
        assert_eq!(log[0]["statusCode"], 503);
        assert!(log[0]["durationMs"].is_number() && log[0]["attemptedAt"].is_string());
        assert_eq!(log.last().unwrap()["statusCode"], 200);
    }
}

#[test]
fn nothing_is_lost_while_the_receiver_is_down_for_a_while() {
    let s = fast_server("0.2,0.2,0.3,0.3,0.5,0.5,0.5");
    let peer = WebhookPeer::start();
    webhook_to(&s, &peer);
    peer.control(json!({ "down": true }));
    let (user, wf) = failing_workflow(&s, "outage");
    fail_times(&s, &user, &wf, 4);
    peer.wait_until("retries while down", |st| st["attempts"].as_array().unwrap().len() >= 8);
    assert!(peer.accepted_ids().is_empty());
    peer.control(json!({ "down": false }));
    let ids: std::collections::BTreeSet<String> = error_docs(&s)
        .iter()
        .map(|d| d["_id"].as_str().unwrap().to_string())
        .collect();
    peer.wait_until("every error after the outage", |st| {
        st["accepted"].as_array().unwrap().len() >= 4
    });
    assert_eq!(peer.accepted_ids(), ids);
}

#[test]
fn retry_after_is_honoured_and_exhausted_deliveries_fail_until_retried() {
    let s = fast_server("0.05,0.05");
    let peer = WebhookPeer::start();
    webhook_to(&s, &peer);
    peer.control(json!({ "failFirst": 1, "status": 429, "retryAfter": 1 }));
    let (user, wf) = failing_workflow(&s, "paced");
    fail_times(&s, &user, &wf, 1);
    let d = wait_deliveries(&s, "", "delivered", |d| d.len() == 1 && d[0]["status"] == "delivered");
    let log = d[0]["attemptLog"].as_array().unwrap();
    assert_eq!(log[0]["statusCode"], 429);
    let gap = |a: &Value| a["attemptedAt"].as_str().unwrap().to_string();
    assert!(gap(&log[1]).as_str() > gap(&log[0]).as_str());
    assert!(
        epoch_ms(&gap(&log[1])) - epoch_ms(&gap(&log[0])) >= 950,
        "Retry-After: 1 was not honoured: {log:?}"
    );

    // Three attempts (1 + 2 retries) all refused: the delivery fails, then a retry sends it.
    peer.control(json!({ "down": true, "status": 500, "retryAfter": null }));
    fail_times(&s, &user, &wf, 1);
    let failed = wait_deliveries(&s, "?status=failed", "failed", |d| d.len() == 1);
    assert_eq!(failed[0]["attempts"], 3);
    assert!(failed[0]["lastError"].as_str().unwrap().contains("500"));
    peer.control(json!({ "down": false }));
    assert_eq!(
        s.post(
            &format!(
                "/settings/logging/deliveries/{}/retry",
                failed[0]["deliveryId"].as_str().unwrap()
            ),
            json!({})
        )
        .status,
        200
    );
    wait_deliveries(&s, "?status=delivered", "two delivered", |d| d.len() == 2);
    let delivered_again = s.post(
        &format!(
            "/settings/logging/deliveries/{}/retry",
            failed[0]["deliveryId"].as_str().unwrap()
        ),
        json!({}),
    );
    assert_eq!(delivered_again.status, 409, "only failed deliveries are retried");
    assert_eq!(s.get("/settings/logging/deliveries?status=lost").status, 422);
}

#[test]
fn a_410_disables_the_webhook_and_turning_it_off_stops_new_deliveries() {
    let s = fast_server("0.05");
    let peer = WebhookPeer::start();
    webhook_to(&s, &peer);
    peer.control(json!({ "failFirst": 1, "status": 410 }));
    let (user, wf) = failing_workflow(&s, "gone");
    fail_times(&s, &user, &wf, 1);
    let d = wait_deliveries(&s, "", "failed", |d| d.len() == 1 && d[0]["status"] == "failed");
    assert_eq!(d[0]["attempts"], 1, "410 is not retried");
    let settings = s.get("/settings/logging/webhook");
    assert_eq!(settings.json["enabled"], false);
    assert!(settings.json["failing"].as_str().unwrap().contains("410"));
    fail_times(&s, &user, &wf, 2);
    assert_eq!(deliveries(&s, "").len(), 1, "a disabled webhook gets no new deliveries");

    // Switched back on, it delivers; switched off by hand, it takes nothing new.
    let on = s.req("PUT", "/settings/logging/webhook", Some(&json!({ "enabled": true })));
    assert_eq!(on.status, 200, "{}", on.json);
    assert_eq!(on.json["enabled"], true);
    fail_times(&s, &user, &wf, 1);
    wait_deliveries(&s, "?status=delivered", "delivered once on", |d| d.len() == 1);
    let off = s.req("PUT", "/settings/logging/webhook", Some(&json!({ "enabled": false })));
    assert_eq!(off.status, 200, "{}", off.json);
    assert_eq!(s.get("/settings/logging/webhook").json["enabled"], false);
    fail_times(&s, &user, &wf, 2);
    assert_eq!(
        deliveries(&s, "").len(),
        2,
        "a webhook turned off by PUT gets no new deliveries"
    );
    assert_eq!(peer.accepted_ids().len(), 1);
}

#[test]
fn a_rotated_secret_signs_twice_for_a_day() {
    let s = fast_server("0.05");
    let old_only = WebhookPeer::start();
    let old = webhook_to(&s, &old_only);
    let rotated = s.post("/settings/logging/webhook/rotate-secret", json!({}));
    let new = rotated.json["secret"].as_str().unwrap().to_string();
    assert!(rotated.json["previousSecretValidUntil"].is_string());
    let (user, wf) = failing_workflow(&s, "rotor");
    fail_times(&s, &user, &wf, 1);
    let st = old_only.wait_until("one error", |st| st["accepted"].as_array().unwrap().len() == 1);
    assert_eq!(st["rejected"], json!([]), "the old secret still verifies");
    let sig = st["accepted"][0]["signature"].as_str().unwrap();
    assert_eq!(sig.split(' ').count(), 2, "two signatures: {sig}");
    let new_only = WebhookPeer::start();
    new_only.control(json!({ "secrets": [new] }));
    s.req(
        "PUT",
        "/settings/logging/webhook",
        Some(&json!({ "url": new_only.hook_url() })),
    );
    fail_times(&s, &user, &wf, 1);
    let st = new_only.wait_until("one error", |st| st["accepted"].as_array().unwrap().len() == 1);
    assert_eq!(st["rejected"], json!([]), "the new secret verifies");
    assert_ne!(old, new);
}

#[test]
fn erasing_a_users_logs_drops_their_undelivered_events() {
    let s = fast_server("30");
    let peer = WebhookPeer::start();
    webhook_to(&s, &peer);
    peer.control(json!({ "down": true }));
    let (user, wf) = failing_workflow(&s, "erased");
    fail_times(&s, &user, &wf, 2);
    wait_deliveries(&s, "?status=pending", "tried once", |d| {
        d.len() == 2 && d.iter().all(|x| x["attempts"] == 1)
    });
    assert_eq!(s.req("DELETE", &format!("/users/{user}/logs"), None).status, 200);
    assert_eq!(deliveries(&s, "").len(), 0);
}

#[test]
fn errors_stream_to_eventbridge_signed_and_a_wrong_secret_delivers_nothing() {
    let moto = Moto::start();
    let s = fast_server("0.1,0.1");
    // A wrong secret first: moto refuses the signature, the delivery log says so.
    let r = s.req(
        "PUT",
        "/settings/logging/eventbridge",
        Some(&moto.settings("definitely-not-the-secret")),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["secretAccessKey"], "****cret");
    let (user, wf) = failing_workflow(&s, "bridged");
    fail_times(&s, &user, &wf, 1);
    let failed = wait_deliveries(&s, "?target=eventbridge", "failed", |d| {
        d.len() == 1 && d[0]["status"] == "failed"
    });
    let err = failed[0]["lastError"].as_str().unwrap();
    assert!(
        err.contains("refused the credentials") && err.contains("Signature"),
        "{err}"
    );
    assert!(s.get("/settings/logging/eventbridge").json["failing"]
        .as_str()
        .unwrap()
        .contains("credentials"));
    assert!(
        moto.drain_queue().is_empty(),
        "nothing was delivered with the wrong secret"
    );

    // The right secret: the same failure and a new one both arrive, Detail intact.
    let r = s.req(
        "PUT",
        "/settings/logging/eventbridge",
        Some(&moto.settings(moto.secret())),
    );
    assert!(r.json["failing"].is_null());
    assert!(!r.json.to_string().contains(moto.secret()), "the secret is never shown");
    let retry = s.post(
        &format!(
            "/settings/logging/deliveries/{}/retry",
            failed[0]["deliveryId"].as_str().unwrap()
        ),
        json!({}),
    );
    assert_eq!(retry.status, 200);
    fail_times(&s, &user, &wf, 1);
    wait_deliveries(&s, "?target=eventbridge&status=delivered", "delivered", |d| {
        d.len() == 2
    });
    let events = moto.drain_queue();
    assert_eq!(events.len(), 2, "{events:?}");
    let docs = error_docs(&s);
    for doc in &docs {
        let ev = events
            .iter()
            .find(|e| e["detail"]["_id"] == doc["_id"])
            .expect("the error arrived");
        assert_eq!(ev["detail"], *doc);
        assert_eq!(ev["source"], "ingot.embedded");
        assert_eq!(ev["detail-type"], "Workflow Error");
    }
    assert!(
        s.get("/settings/logging/eventbridge").json["failing"].is_null(),
        "healthy again"
    );
}

#[test]
fn delivery_secrets_never_reach_the_database_file_in_plain_text() {
    let mut s = Server::start();
    let peer = WebhookPeer::start();
    let secret = webhook_to(&s, &peer);
    let aws_secret = format!("AwsSecret{}", ingot::ids::hex(&ingot::ids::random_bytes(12)));
    let r = s.req("PUT", "/settings/logging/eventbridge", Some(&json!({ "accessKeyId": "AKIATEST", "secretAccessKey": aws_secret, "region": "us-east-1", "eventBusName": "b", "endpoint": "http://127.0.0.1:9" })));
    assert_eq!(r.status, 200);
    let rotated = s.post("/settings/logging/webhook/rotate-secret", json!({})).json["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let db = s.db_path();
    s.stop();
    for needle in [&secret, &secret[6..], &rotated[6..], aws_secret.as_str()] {
        assert!(!db_contains(&db, needle.as_bytes()), "{needle} is in the database file");
    }
    // And master-key rotation re-seals them too.
    s.restart();
    ingot::admin::rotate_master(&s.config).unwrap();
    let again = s.get("/settings/logging/eventbridge");
    assert_eq!(
        again.json["secretAccessKey"].as_str().unwrap(),
        format!("****{}", &aws_secret[aws_secret.len() - 4..])
    );
}

/// The signatures in a `webhook-signature` header, sorted.
fn signatures_of(got: &crate::receiver::Got) -> Vec<String> {
    let mut sigs: Vec<String> = got
        .header("webhook-signature")
        .unwrap()
        .split(' ')
        .map(str::to_string)
        .collect();
    sigs.sort();
    sigs
}

/// What each of `secrets` signs for this request, sorted.
fn expected_signatures(got: &crate::receiver::Got, secrets: &[&str]) -> Vec<String> {
    let id = got.header("webhook-id").unwrap();
    let ts: i64 = got.header("webhook-timestamp").unwrap().parse().unwrap();
    let mut sigs: Vec<String> = secrets
        .iter()
        .map(|s| ingot::delivery::webhook::sign(s, id, ts, got.body.as_bytes()).unwrap())
        .collect();
    sigs.sort();
    sigs
}

#[test]
fn a_rotated_out_secret_stops_signing_after_24_hours() {
    let s = fast_server("0.05");
    let rx = crate::receiver::Receiver::start();
    let r = s.req(
        "PUT",
        "/settings/logging/webhook",
        Some(&json!({ "url": format!("{}/hook", rx.url) })),
    );
    let old = r.json["secret"].as_str().unwrap().to_string();
    let new = s.post("/settings/logging/webhook/rotate-secret", json!({})).json["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let (user, wf) = failing_workflow(&s, "clocked");
    let received = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while rx.requests().len() < n {
            assert!(Instant::now() < deadline, "webhook {n} never arrived");
            std::thread::sleep(Duration::from_millis(20));
        }
        rx.requests()[n - 1].clone()
    };
    // A minute before the day is out, both secrets sign.
    s.app().clock.advance(24 * 3600 * 1000 - 60_000);
    fail_times(&s, &user, &wf, 1);
    let got = received(1);
    assert_eq!(signatures_of(&got), expected_signatures(&got, &[&new, &old]));
    // A minute after, only the new one.
    s.app().clock.advance(120_000);
    fail_times(&s, &user, &wf, 1);
    let got = received(2);
    assert_eq!(signatures_of(&got), expected_signatures(&got, &[&new]));
}

#[test]
fn an_error_log_wakes_the_delivery_threads_at_once() {
    // Unwoken, the delivery threads would sleep for an hour: a delivery within the test's
    // deadline shows that writing the error log woke them.
    let s = Server::start_configured(|c| c.delivery_idle_wait = Duration::from_secs(3600));
    let peer = WebhookPeer::start();
    webhook_to(&s, &peer);
    // Let the threads go back to sleep after the settings write woke them.
    std::thread::sleep(Duration::from_millis(300));
    let (user, wf) = failing_workflow(&s, "woken");
    fail_times(&s, &user, &wf, 1);
    peer.wait_until("the error", |st| st["accepted"].as_array().unwrap().len() == 1);
}

#[test]
fn after_rotate_master_and_a_restart_on_the_new_key_alone_both_targets_still_deliver() {
    let moto = Moto::start();
    let peer = WebhookPeer::start();
    let mut s = fast_server("0.1,0.1");
    let old = webhook_to(&s, &peer);
    let new = s.post("/settings/logging/webhook/rotate-secret", json!({})).json["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s.req(
        "PUT",
        "/settings/logging/eventbridge",
        Some(&moto.settings(moto.secret())),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    let (user, wf) = failing_workflow(&s, "resealed");

    let ingot::config::MasterKeySource::File(key_file) = s.config.master_key.clone() else {
        panic!("the test server keeps its key in a file")
    };
    let old_key = ingot::crypto::Keyring::read_file(&key_file).unwrap().first_id();
    ingot::admin::rotate_master(&s.config).unwrap();
    let ring = ingot::crypto::Keyring::read_file(&key_file).unwrap();
    assert_eq!(ring.ids().len(), 1, "the old key left the file");
    assert_ne!(ring.first_id(), old_key);
    s.restart();

    // The rotated-out webhook secret (still within its day) and the current one both sign.
    peer.control(json!({ "secrets": [old] }));
    fail_times(&s, &user, &wf, 1);
    peer.wait_until("signed with the previous secret", |st| {
        st["accepted"].as_array().unwrap().len() == 1
    });
    peer.control(json!({ "secrets": [new] }));
    fail_times(&s, &user, &wf, 1);
    let st = peer.wait_until("signed with the current secret", |st| {
        st["accepted"].as_array().unwrap().len() == 2
    });
    assert_eq!(st["rejected"], json!([]));
    // EventBridge still signs with the re-sealed secret access key: moto takes both.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut events = Vec::new();
    while events.len() < 2 {
        events.extend(moto.drain_queue());
        assert!(
            Instant::now() < deadline,
            "EventBridge got {} of 2: {:?}",
            events.len(),
            deliveries(&s, "?target=eventbridge")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn any_text_a_customer_writes_reaches_the_webhook() {
    let s = fast_server("0.05");
    let peer = WebhookPeer::start();
    webhook_to(&s, &peer);
    let name = "Créer le contact — 50% «vite»\r\nX-Injected: 1";
    let iid = s.create_integration(json!({ "name": "unicode", "app": "demo", "workflows": [{ "name": "w", "blocks": [{ "type": "fail", "name": name, "message": "Échec: ça n'a pas marché" }] }] }));
    let user = s.create_user("unicode");
    let wf = s.install(&user, &iid).remove(0);
    fail_times(&s, &user, &wf, 1);
    let st = peer.wait_until("the error", |st| st["accepted"].as_array().unwrap().len() == 1);
    let got = &st["accepted"][0];
    let body = &got["body"];
    assert_eq!(body["blockName"], name, "the body carries the text exactly");
    assert_eq!(body["error"], "Échec: ça n'a pas marché");
    let header = got["headers"]["X-Alloy-BlockName"]
        .as_str()
        .or_else(|| got["headers"]["x-alloy-blockname"].as_str())
        .unwrap_or_else(|| panic!("no X-Alloy-BlockName: {got}"));
    assert_eq!(
        header,
        "Cr%C3%A9er le contact %E2%80%94 50%25 %C2%ABvite%C2%BB%0D%0AX-Injected: 1"
    );
    assert!(got["headers"].get("X-Injected").is_none());
}

#[test]
fn a_credential_that_cannot_be_a_header_never_leaks_into_errors_deliveries_or_the_database() {
    let moto = Moto::start();
    let mut s = fast_server("0.05");
    let rx = crate::receiver::Receiver::start();
    let hook = s.req(
        "PUT",
        "/settings/logging/webhook",
        Some(&json!({ "url": format!("{}/hook", rx.url) })),
    );
    assert_eq!(hook.status, 200);
    assert_eq!(
        s.req(
            "PUT",
            "/settings/logging/eventbridge",
            Some(&moto.settings(moto.secret()))
        )
        .status,
        200
    );
    let user = s.create_user("leaky");
    let secrets = ["nl-S3cretValue-41\n", "cl\u{e9}-S3cretValue-42"];
    // Refused when made, without the value in the answer.
    for secret in secrets {
        for data in [
            json!({ "fieldName": "X-Key", "value": secret }),
            json!({ "token": secret }),
        ] {
            let r = s.post(
                &format!("/users/{user}/credentials"),
                json!({ "type": "httpHeaderAuth", "data": data }),
            );
            assert_eq!(r.status, 422, "{}", r.json);
            assert!(!r.json.to_string().contains("S3cretValue"), "{}", r.json);
        }
    }
    for framing in [
        "Host",
        "content-length",
        "Transfer-Encoding",
        "Proxy-Authorization",
        "Connection",
    ] {
        let r = s.post(
            &format!("/users/{user}/credentials"),
            json!({ "type": "httpHeaderAuth", "data": { "fieldName": framing, "value": "x" } }),
        );
        assert_eq!(r.status, 422, "{framing}: {}", r.json);
    }
    // Stored before that rule (straight into the store): the run fails without showing it.
    let iid = s.create_integration(json!({ "name": "leak", "app": "a", "credentialType": "httpHeaderAuth",
        "workflows": [{ "name": "w", "blocks": [{ "type": "http", "name": "Call", "url": format!("{}/x", rx.url) }] }] }));
    let wf = s.install(&user, &iid).remove(0);
    for (i, (field, secret)) in [("X-Key", secrets[0]), ("X-Key", secrets[1]), ("Host", "evil.example")]
        .iter()
        .enumerate()
    {
        let data = serde_json::to_vec(&json!({ "fieldName": field, "value": secret })).unwrap();
        let app = s.app().clone();
        let u = user.clone();
        let store_secrets = app.store.secrets.clone();
        app.store
            .write(move |c| {
                ingot::store::credentials::insert(
                    c,
                    &store_secrets,
                    ingot::store::Env::Development,
                    &u,
                    "httpHeaderAuth",
                    None,
                    &data,
                )
            })
            .unwrap();
        fail_times(&s, &user, &wf, 1);
        let docs = error_docs(&s);
        assert_eq!(docs.len(), i + 1);
    }
    let wait = Instant::now() + Duration::from_secs(60);
    let mut events = Vec::new();
    while events.len() < 3 || rx.requests().iter().filter(|r| r.path == "/hook").count() < 3 {
        events.extend(moto.drain_queue());
        assert!(Instant::now() < wait, "deliveries did not arrive");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        rx.requests().iter().all(|r| r.path != "/x"),
        "the bad header was never sent"
    );
    let mut seen = vec![serde_json::to_string(&error_docs(&s)).unwrap()];
    seen.push(s.get(&format!("/workflows/{wf}/logs")).json.to_string());
    seen.extend(rx.requests().iter().map(|r| format!("{:?} {}", r.headers, r.body)));
    seen.extend(events.iter().map(Value::to_string));
    for text in &seen {
        assert!(!text.contains("S3cretValue"), "a secret leaked: {text}");
    }
    // Each failed in the engine's own check, before any header reached the HTTP client.
    for doc in error_docs(&s) {
        let e = doc["error"].as_str().unwrap();
        assert!(e.contains("cannot be sent") && e.contains("not shown"), "{e}");
    }
    let db = s.db_path();
    s.stop();
    assert!(!db_contains(&db, b"S3cretValue"), "a secret is in the database file");
}

#[test]
fn a_retry_goes_out_when_it_is_due_not_at_the_next_idle_look() {
    // Unwoken, the delivery threads would sleep an hour: the retry 0.2 s after a refusal
    // arriving within the deadline shows the thread sleeps only until the next delivery is due.
    let s = Server::start_configured(|c| {
        c.delivery_idle_wait = Duration::from_secs(3600);
        c.retry_schedule = ingot::delivery::parse_schedule("0.2").unwrap();
    });
    let peer = WebhookPeer::start();
    webhook_to(&s, &peer);
    peer.control(json!({ "failFirst": 1, "status": 503 }));
    let (user, wf) = failing_workflow(&s, "due");
    fail_times(&s, &user, &wf, 1);
    let st = peer.wait_until("the retry", |st| st["accepted"].as_array().unwrap().len() == 1);
    assert_eq!(st["attempts"].as_array().unwrap().len(), 2, "{st}");
}

/// How EventBridge's refusals are told apart, each answered by a fake endpoint: refused
/// credentials mark the target failing (by the AWS error kind, or by a bare 401 or 403),
/// throttling and server errors back off, anything else is reported as it came; a long
/// error body is still read to its error kind.
#[test]
fn eventbridge_refusals_are_told_apart_by_status_and_aws_error_kind() {
    let long = "x".repeat(3000);
    let cases: Vec<(u16, String, &str, bool)> = vec![
        (
            400,
            json!({ "__type": "UnrecognizedClientException", "message": "who?" }).to_string(),
            "refused the credentials",
            true,
        ),
        (401, "{}".into(), "refused the credentials", true),
        (403, "{}".into(), "refused the credentials", true),
        (
            400,
            json!({ "__type": "ThrottlingException", "message": "slow" }).to_string(),
            "throttling or unavailable",
            false,
        ),
        (429, "{}".into(), "throttling or unavailable", false),
        (503, "{}".into(), "throttling or unavailable", false),
        (
            400,
            json!({ "__type": "ValidationException", "message": long }).to_string(),
            "answered 400 ValidationException",
            false,
        ),
    ];
    for (status, body, expected, auth) in cases {
        let rx = crate::receiver::Receiver::start();
        rx.answer(status);
        rx.answer_body(&body);
        let s = fast_server("");
        let settings = json!({ "accessKeyId": "AKIAFAKE", "secretAccessKey": "fake-secret-key", "region": "us-east-1",
                               "eventBusName": "bus", "endpoint": rx.url, "enabled": true });
        assert_eq!(
            s.req("PUT", "/settings/logging/eventbridge", Some(&settings)).status,
            200
        );
        let (user, wf) = failing_workflow(&s, "refused");
        fail_times(&s, &user, &wf, 1);
        let failed = wait_deliveries(&s, "?target=eventbridge", "failed", |d| {
            d.len() == 1 && d[0]["status"] == "failed"
        });
        let err = failed[0]["lastError"].as_str().unwrap();
        assert!(
            err.contains(expected),
            "{status} {}: {err}",
            &body[..body.len().min(60)]
        );
        let failing = s.get("/settings/logging/eventbridge").json["failing"].clone();
        assert_eq!(failing.is_string(), auth, "{status}: failing = {failing}");
    }
}

/// Only a 2xx delivers (a 3xx is retried), and `Retry-After` is read from 429 and 503 only: on
/// a 503 it is waited for, on a 500 the schedule rules.
#[test]
fn only_a_2xx_delivers_and_retry_after_is_read_from_429_and_503_only() {
    let s = fast_server("0.05,0.05,0.05");
    let peer = WebhookPeer::start();
    webhook_to(&s, &peer);
    let (user, wf) = failing_workflow(&s, "statuses");
    let cases = [(300, None, false), (503, Some(1), true), (500, Some(1), false)];
    // The gaps measured include the first attempt's signing: let the request-signing key,
    // made on first need, exist before.
    crate::signing::warm_request_signing(&s);
    for (n, (status, retry_after, waits)) in cases.into_iter().enumerate() {
        peer.control(json!({ "failFirst": 1, "status": status, "retryAfter": retry_after }));
        fail_times(&s, &user, &wf, 1);
        let d = wait_deliveries(&s, "?status=delivered", "delivered", |d| d.len() == n + 1);
        let newest = d
            .iter()
            .max_by_key(|d| d["createdAt"].as_str().unwrap().to_string())
            .unwrap();
        let log = newest["attemptLog"].as_array().unwrap();
        assert_eq!(log.len(), 2, "{status}: refused once, then delivered: {log:?}");
        assert_eq!(log[0]["statusCode"], status);
        let at = |a: &Value| epoch_ms(a["attemptedAt"].as_str().unwrap());
        let gap = at(&log[1]) - at(&log[0]);
        if waits {
            assert!(gap >= 950, "{status}: Retry-After: 1 was not honoured ({gap} ms)");
        } else {
            assert!(gap < 900, "{status}: the retry waited {gap} ms, not the 50 ms schedule");
        }
    }
}

/// An idle delivery thread sleeps until its next delivery is due (or it is woken): with one
/// failed delivery due in an hour, it looks at the outbox a handful of times a second at most.
#[test]
fn an_idle_delivery_thread_sleeps_until_the_next_delivery_is_due() {
    let s = Server::start_configured(|c| {
        c.retry_schedule = ingot::delivery::parse_schedule("3600").unwrap();
        c.delivery_idle_wait = Duration::from_secs(10);
    });
    let rx = crate::receiver::Receiver::start();
    rx.answer(500);
    assert_eq!(
        s.req(
            "PUT",
            "/settings/logging/webhook",
            Some(&json!({ "url": format!("{}/hook", rx.url) }))
        )
        .status,
        200
    );
    let (user, wf) = failing_workflow(&s, "sleeper");
    fail_times(&s, &user, &wf, 1);
    wait_deliveries(&s, "", "one refused attempt", |d| d.len() == 1 && d[0]["attempts"] == 1);
    std::thread::sleep(Duration::from_millis(100));
    let before = s.app().delivery.looks();
    std::thread::sleep(Duration::from_millis(600));
    let looks = s.app().delivery.looks() - before;
    assert!(
        looks <= 4,
        "the delivery threads looked {looks} times in 600 ms while nothing was due"
    );
}
