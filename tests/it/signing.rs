//! `X-Alloy-Signature` on every request ingot sends, checked the way Alloy's guide tells a
//! customer to check it: Node's `crypto.verify` over `METHOD + URL + body`, with the PEM
//! fetched from ingot's `GET /security/alloy_public_key.pem`.

use crate::harness::{db_contains, Server};
use crate::receiver::{Got, Receiver};
use ingot::store::{request_keys, Secrets};
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The receiving side, in Node. For a JSON body it is Alloy's snippet word for word (the body
/// parsed, as a server framework hands it over, then `JSON.stringify`); a form or text body is
/// taken as it came, and a request without a body adds nothing after the URL.
const VERIFY_JS: &str = r#"
const crypto = require("crypto");
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const results = input.cases.map((c) => {
  const request = {
    method: c.method,
    url: c.url,
    headers: { "X-Alloy-Signature": c.signature },
    data: c.kind === "json" ? JSON.parse(c.body) : undefined,
  };
  const signature = Buffer.from(request.headers["X-Alloy-Signature"], "hex");
  const body = c.kind === "json" ? JSON.stringify(request.data || request.params) : c.body;
  const stringToVerify = `${request.method}${request.url}${body}`;
  return crypto.verify("sha256", Buffer.from(stringToVerify), input.pem, signature);
});
console.log(JSON.stringify(results));
"#;

/// One request as a receiver got it.
#[derive(Clone, Debug)]
struct Case {
    method: String,
    url: String,
    body: String,
    /// `json`, `raw` or `none`.
    kind: &'static str,
    signature: String,
}

impl Case {
    fn of(rx: &Receiver, got: &Got, kind: &'static str) -> Case {
        Case {
            method: got.method.clone(),
            url: format!("{}{}", rx.url, got.path),
            body: got.body.clone(),
            kind,
            signature: got
                .header("X-Alloy-Signature")
                .expect("every outgoing request carries X-Alloy-Signature")
                .to_string(),
        }
    }

    /// The same request with its body changed by one byte.
    fn with_body_byte_changed(&self, from: &str, to: &str) -> Case {
        assert_eq!((from.len(), to.len()), (1, 1));
        assert!(self.body.contains(from), "{} has no {from}", self.body);
        Case {
            body: self.body.replacen(from, to, 1),
            ..self.clone()
        }
    }

    fn with_url(&self, url: String) -> Case {
        Case { url, ..self.clone() }
    }
}

/// What Node's `crypto.verify` says of each case, with `pem` as the public key.
fn node_verifies(pem: &str, cases: &[Case]) -> Vec<bool> {
    let input = json!({
        "pem": pem,
        "cases": cases.iter().map(|c| json!({ "method": c.method, "url": c.url, "body": c.body, "kind": c.kind, "signature": c.signature })).collect::<Vec<_>>(),
    });
    let mut child = Command::new("node")
        .args(["-e", VERIFY_JS])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "node: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The public key as a customer fetches it: no auth.
fn pem(s: &Server) -> String {
    let r = ureq::get(&format!("{}/security/alloy_public_key.pem", s.base))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.content_type(), "application/x-pem-file");
    let pem = r.into_string().unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    pem
}

/// Makes the server's request-signing key now (it is made on first need), for tests that time
/// their first outgoing request.
pub fn warm_request_signing(s: &Server) {
    pem(s);
}

/// Waits (bounded) until the receiver has `n` requests; returns them.
fn received(rx: &Receiver, n: usize) -> Vec<Got> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = rx.requests();
        if got.len() >= n {
            return got;
        }
        assert!(Instant::now() < deadline, "{} of {n} requests arrived", got.len());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Installs a one-block workflow for a new user; returns (user id, workflow id).
fn one_block(s: &Server, name: &str, block: Value) -> (String, String) {
    let integration = json!({ "name": name, "app": "signed", "workflows": [{ "name": "w", "blocks": [block] }] });
    s.installed_as(&s.key, integration, &format!("user-{name}"), None)
}

fn run(s: &Server, user: &str, wf: &str, data: Value) -> Value {
    let ex = s.run_and_wait_as(&s.key, user, wf, data);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    ex
}

/// A POST block whose JSON body holds what JavaScript writes differently from serde_json:
/// non-ASCII text, a U+2028, whole floats, exponents past JavaScript's thresholds, an integer
/// past 2^53, integer-like keys.
fn tricky_post(url: &str) -> Value {
    json!({
        "name": "Créer le contact", "type": "http", "method": "POST",
        "url": format!("{url}/contacts/{{{{data.id}}}}?v=1&q=%C3%A9"),
        "body": {
            "name": "{{data.name}}", "note": "Zoë — 東京 😀 \u{2028} \"quoted\" \\ \u{1}",
            "ratio": 1.0, "big": 1e21, "small": 1e-7, "huge": 12345678901234567890u64,
            "10": "ten", "2": "two", "nested": { "x": [1.5, -0.0, 100.0, 0.000001] }
        }
    })
}

#[test]
fn a_webhook_delivery_verifies_with_nodes_crypto_verify_and_the_published_pem() {
    let s = Server::start();
    let rx = Receiver::start();
    let url = format!("{}/hooks/ingot?src=test", rx.url);
    let r = s.req(
        "PUT",
        "/settings/logging/webhook",
        Some(&json!({ "url": url, "enabled": true })),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    let (user, wf) = one_block(
        &s,
        "hooked",
        json!({ "type": "fail", "name": "Refuser — 東京", "message": "Upstream said « no » 😀" }),
    );
    let body = json!({ "userId": user, "workflowId": wf });
    assert_eq!(s.post("/run/workflow", body).status, 200);
    let got = received(&rx, 1).remove(0);
    assert_eq!(got.path, "/hooks/ingot?src=test");
    assert!(got.body.contains("Upstream said « no » 😀"), "{}", got.body);
    assert!(
        got.header("webhook-signature").is_some(),
        "Standard Webhooks headers stay"
    );
    let case = Case::of(&rx, &got, "json");
    let cases = [
        case.clone(),
        case.with_body_byte_changed("U", "u"),
        case.with_url(format!("{}/hooks/ingot?src=tesT", rx.url)),
    ];
    assert_eq!(node_verifies(&pem(&s), &cases), [true, false, false]);
}

#[test]
fn an_http_block_post_with_a_non_ascii_json_body_verifies_with_node() {
    let s = Server::start();
    let rx = Receiver::start();
    let (user, wf) = one_block(&s, "post", tricky_post(&rx.url));
    run(&s, &user, &wf, json!({ "id": "c 42", "name": "Zoë" }));
    let got = received(&rx, 1).remove(0);
    assert_eq!(got.path, "/contacts/c%2042?v=1&q=%C3%A9");
    assert_eq!(got.header("Content-Type"), Some("application/json"));
    // Compact, non-ASCII as it is, and numbers as JavaScript writes them.
    assert!(
        got.body
            .starts_with(r#"{"2":"two","10":"ten","big":1e+21,"huge":12345678901234567000,"name":"Zoë","#),
        "{}",
        got.body
    );
    assert!(
        got.body.contains(r#""nested":{"x":[1.5,0,100,0.000001]}"#),
        "{}",
        got.body
    );
    assert!(got.body.contains(r#""ratio":1,"small":1e-7"#), "{}", got.body);
    assert!(got.body.contains("東京 😀"), "{}", got.body);
    let case = Case::of(&rx, &got, "json");
    let cases = [
        case.clone(),
        case.with_body_byte_changed("Z", "z"),
        case.with_url(format!("{}/contacts/c%2043?v=1&q=%C3%A9", rx.url)),
        Case {
            method: "PUT".into(),
            ..case.clone()
        },
    ];
    assert_eq!(node_verifies(&pem(&s), &cases), [true, false, false, false]);
}

#[test]
fn a_bodiless_get_signs_method_and_url_alone() {
    let s = Server::start();
    let rx = Receiver::start();
    let block = json!({ "name": "Ping", "type": "http", "method": "GET", "url": format!("{}/ping?q={{{{data.q}}}}#frag", rx.url) });
    let (user, wf) = one_block(&s, "get", block);
    run(&s, &user, &wf, json!({ "q": "a b" }));
    let got = received(&rx, 1).remove(0);
    assert_eq!(
        (got.method.as_str(), got.path.as_str(), got.body.as_str()),
        ("GET", "/ping?q=a%20b", "")
    );
    let case = Case::of(&rx, &got, "none");
    let cases = [
        case.clone(),
        // The fragment is never sent, so it is not signed either.
        case.with_url(format!("{}/ping?q=a%20b#frag", rx.url)),
        // What Alloy's snippet would make of a missing body.
        Case {
            body: "undefined".into(),
            ..case.clone()
        },
    ];
    assert_eq!(node_verifies(&pem(&s), &cases), [true, false, false]);
}

#[test]
fn neither_a_block_nor_a_credential_may_set_x_alloy_signature() {
    let s = Server::start();
    let block = json!({ "name": "Forge", "type": "http", "url": "http://127.0.0.1:9/", "headers": { "x-alloy-signature": "00" } });
    let r = s.post(
        "/integrations",
        json!({ "name": "forge", "app": "f", "workflows": [{ "name": "w", "blocks": [block] }] }),
    );
    assert_eq!(r.status, 422, "{}", r.json);
    let user = s.create_user("forger");
    let r = s.post(
        &format!("/users/{user}/credentials"),
        json!({ "type": "httpHeaderAuth", "data": { "fieldName": "X-Alloy-Signature", "value": "00" } }),
    );
    assert_eq!(r.status, 422, "{}", r.json);
    assert!(r.message().contains("signature"), "{}", r.message());
}

#[test]
fn a_token_refresh_signs_its_form_body_exactly_as_sent() {
    let s = Server::start();
    let rx = Receiver::start();
    rx.answer_body(r#"{"access_token":"fresh-token","expires_in":3600}"#);
    let integration = json!({
        "name": "OAuthed", "app": "oauthed", "credentialType": "oauth2",
        "oauth": { "authorizationUrl": format!("{}/auth", rx.url), "tokenUrl": format!("{}/oauth/token?tenant=t1", rx.url),
                   "scopes": ["a"], "clientId": "client", "clientSecret": "client-secret" },
        "workflows": [{ "name": "w", "blocks": [{ "name": "Me", "type": "http", "url": format!("{}/me", rx.url) }] }]
    });
    let expired = json!({ "type": "oauth2", "data": { "accessToken": "old-token", "refreshToken": "refresh+me/ñ",
                                                      "expiresAt": "2020-01-01T00:00:00.000Z" } });
    let (user, wf) = s.installed_as(&s.key, integration, "oauth-refresher", Some(expired));
    run(&s, &user, &wf, json!({}));
    let got = received(&rx, 2);
    let token = &got[0];
    assert_eq!(token.path, "/oauth/token?tenant=t1");
    assert_eq!(
        token.body,
        "grant_type=refresh_token&refresh_token=refresh%2Bme%2F%C3%B1"
    );
    assert_eq!(got[1].header("Authorization"), Some("Bearer fresh-token"));
    let case = Case::of(&rx, token, "raw");
    let cases = [
        case.clone(),
        case.with_body_byte_changed("t", "T"),
        Case::of(&rx, &got[1], "none"),
    ];
    assert_eq!(node_verifies(&pem(&s), &cases), [true, false, true]);
}

#[test]
fn after_rotate_request_signing_a_running_server_signs_with_the_new_key_only() {
    let s = Server::start();
    let rx = Receiver::start();
    let (user, wf) = one_block(&s, "rotated", tricky_post(&rx.url));
    let old_pem = pem(&s);
    run(&s, &user, &wf, json!({ "id": "1", "name": "before" }));
    let (new_id, replaced) = ingot::admin::rotate_request_signing(&s.config).unwrap();
    assert_eq!(replaced.len(), 1);
    assert!(!replaced.contains(&new_id));
    let new_pem = pem(&s);
    assert_ne!(new_pem, old_pem, "the running server serves the new key");
    run(&s, &user, &wf, json!({ "id": "2", "name": "after" }));
    let got = received(&rx, 2);
    let (before, after) = (Case::of(&rx, &got[0], "json"), Case::of(&rx, &got[1], "json"));
    assert_eq!(node_verifies(&old_pem, &[before.clone(), after.clone()]), [true, false]);
    assert_eq!(node_verifies(&new_pem, &[before, after]), [false, true]);
}

/// Slices of `der` as they could appear in a file or a log: raw, hex, and base64 at each of
/// the three alignments.
pub fn leak_forms(der: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mid = der.len() / 2;
    let mut forms = vec![
        der[mid..mid + 32].to_vec(),
        ingot::ids::hex(&der[mid..mid + 32]).into_bytes(),
    ];
    for shift in 0..3 {
        forms.push(b64.encode(&der[mid + shift..mid + shift + 48]).into_bytes());
    }
    forms
}

/// The stored private key (PKCS#8 DER) of the database, opened with its master key.
pub fn stored_private_key(db: &std::path::Path, secrets: &Secrets) -> Vec<u8> {
    let conn = ingot::store::open_connection(db, ingot::config::SyncMode::Full).unwrap();
    let id = request_keys::current_id(&conn).unwrap().expect("a request-signing key");
    request_keys::get(&conn, secrets, &id).unwrap().unwrap().1
}

#[test]
fn the_key_is_made_on_first_need_sealed_resealed_by_rotate_master_and_counted_by_verify() {
    let mut s = Server::start();
    let db = s.db_path();
    let conn = ingot::store::open_connection(&db, ingot::config::SyncMode::Full).unwrap();
    assert_eq!(request_keys::current_id(&conn).unwrap(), None, "no key at start");
    let secrets = Secrets::load(&s.config.master_key).unwrap();
    let before = ingot::backup::verify(&db, &secrets).unwrap().secrets_opened;
    let first = pem(&s);
    let id = request_keys::current_id(&conn)
        .unwrap()
        .expect("the first fetch made the key");
    assert_eq!(pem(&s), first, "made once");
    let opened = ingot::backup::verify(&db, &secrets).unwrap();
    assert_eq!((opened.secrets_opened, opened.failures.len()), (before + 1, 0));
    let private = stored_private_key(&db, &secrets);
    drop(conn);
    s.stop();
    for form in leak_forms(&private) {
        assert!(
            !db_contains(&db, &form),
            "the private key is in the database file: {form:?}"
        );
    }

    s.restart();
    let r = ingot::admin::rotate_master(&s.config).unwrap();
    assert!(r.resealed >= 2, "{r:?}");
    let ring = ingot::crypto::Keyring::read_file(match &s.config.master_key {
        ingot::config::MasterKeySource::File(p) => p,
        other => panic!("{other:?}"),
    })
    .unwrap();
    let conn = ingot::store::open_connection(&db, ingot::config::SyncMode::Full).unwrap();
    let sealed: Vec<u8> = conn
        .query_row("SELECT private_sealed FROM request_signing_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        ingot::crypto::envelope_key_id(&sealed),
        Some(ring.first_id()),
        "re-sealed"
    );
    assert_eq!(request_keys::current_id(&conn).unwrap(), Some(id), "the same key");
    let only_new = Secrets::load(&s.config.master_key).unwrap();
    assert_eq!(
        ingot::backup::verify(&db, &only_new).unwrap().failures,
        Vec::<String>::new()
    );
    // Opened with the new master key alone after a restart, it still signs what the PEM verifies.
    s.restart();
    let rx = Receiver::start();
    let (user, wf) = one_block(&s, "resealed", tricky_post(&rx.url));
    run(&s, &user, &wf, json!({ "id": "3", "name": "x" }));
    let case = Case::of(&rx, &received(&rx, 1)[0], "json");
    assert_eq!(pem(&s), first);
    assert_eq!(node_verifies(&first, &[case]), [true]);
}

/// Random JSON heavy in what JavaScript writes differently: numbers of every magnitude,
/// integer-like keys, escapes and characters beyond ASCII.
fn tricky_value(rng: &mut impl rand::Rng, depth: u32) -> Value {
    let pick = if depth >= 3 {
        rng.gen_range(0..4)
    } else {
        rng.gen_range(0..6)
    };
    match pick {
        0 => Value::Null,
        1 => Value::Bool(rng.gen()),
        2 => tricky_number(rng),
        3 => Value::String(tricky_string(rng)),
        4 => Value::Array((0..rng.gen_range(0..5)).map(|_| tricky_value(rng, depth + 1)).collect()),
        _ => {
            const KEYS: &[&str] = &[
                "0",
                "1",
                "2",
                "10",
                "01",
                "-1",
                "1.5",
                "1e3",
                "4294967294",
                "4294967295",
                "9007199254740993",
                " 1",
                "",
                "a",
                "B",
                "__proto__",
                "é",
                "😀",
            ];
            let mut o = serde_json::Map::new();
            for _ in 0..rng.gen_range(0..7) {
                let key = match rng.gen_range(0..3) {
                    0 => tricky_string(rng),
                    1 => rng.gen_range(0u32..100_000).to_string(),
                    _ => KEYS[rng.gen_range(0..KEYS.len())].to_string(),
                };
                o.insert(key, tricky_value(rng, depth + 1));
            }
            Value::Object(o)
        }
    }
}

fn tricky_number(rng: &mut impl rand::Rng) -> Value {
    let f = match rng.gen_range(0..7) {
        0 => return json!(rng.gen::<i64>() >> rng.gen_range(0..63)),
        1 => return json!(rng.gen::<u64>()),
        2 => f64::from_bits(rng.gen()),
        3 => rng.gen_range(1.0..10.0f64) * 10f64.powi(rng.gen_range(-330..310)),
        4 => rng.gen_range(-5i64..5) as f64 * 10f64.powi(rng.gen_range(-9..24)),
        5 => (9007199254740992i64 + rng.gen_range(-3..4)) as f64,
        _ => rng.gen_range(-1e6..1e6f64).round() / [1.0, 10.0, 1000.0][rng.gen_range(0..3)],
    };
    serde_json::Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

fn tricky_string(rng: &mut impl rand::Rng) -> String {
    const SPECIAL: &[char] = &[
        '"',
        '\\',
        '/',
        '\u{0}',
        '\u{8}',
        '\t',
        '\n',
        '\u{b}',
        '\u{c}',
        '\r',
        '\u{1f}',
        '\u{7f}',
        '\u{80}',
        'é',
        '東',
        '😀',
        '\u{2028}',
        '\u{2029}',
        '\u{feff}',
        '\u{fffd}',
        '\u{10ffff}',
    ];
    (0..rng.gen_range(0..8))
        .map(|_| match rng.gen_range(0..3) {
            0 => SPECIAL[rng.gen_range(0..SPECIAL.len())],
            1 => rng.gen_range(' '..='~'),
            _ => std::char::from_u32(rng.gen_range(0..0x11_0000)).unwrap_or('?'),
        })
        .collect()
}

/// The body serializer's promise, tested against the real thing: for any JSON value, the
/// bytes ingot sends come back unchanged from Node's `JSON.stringify(JSON.parse(body))`.
#[test]
fn signed_json_bodies_are_fixed_points_of_nodes_json_parse_and_stringify() {
    use rand::SeedableRng;
    let seed: u64 = rand::random();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let bodies: Vec<String> = (0..3000)
        .map(|_| ingot::jsjson::to_string(&tricky_value(&mut rng, 0)))
        .collect();
    let script = r#"
      const bodies = JSON.parse(require("fs").readFileSync(0, "utf8"));
      console.log(JSON.stringify(bodies.map((b) => JSON.stringify(JSON.parse(b)))));
    "#;
    let mut child = Command::new("node")
        .args(["-e", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node runs");
    let input = serde_json::to_vec(&bodies).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    let again: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    let differ: Vec<(&String, &String)> = bodies.iter().zip(&again).filter(|(a, b)| a != b).take(5).collect();
    assert!(differ.is_empty(), "seed {seed}: ours, then Node's: {differ:#?}");
    assert!(
        bodies.iter().any(|b| b.contains("e+")) && bodies.iter().any(|b| b.contains("😀")),
        "control"
    );
}
