//! docs/openapi.json against the server: every response the integration tests get is checked
//! against the document (the harness calls [`check`]), and schemathesis (PyPI) fuzzes every
//! operation of a live server with it.

use crate::harness::Server;
use serde_json::Value;
use std::process::Command;
use std::sync::LazyLock;

static DOC: LazyLock<Value> = LazyLock::new(|| serde_json::from_str(ingot::handlers::session::OPENAPI).unwrap());

/// The operation a request is for: the path without its version segment, query and slashes,
/// matched segment by segment against the document's templates (literal segments first).
fn operation(method: &str, path: &str) -> Option<&'static Value> {
    let path = path.split('?').next().unwrap_or_default();
    let mut segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segs
        .first()
        .is_some_and(|s| s.len() == 7 && s.as_bytes()[4] == b'-' && s[..4].chars().all(|c| c.is_ascii_digit()))
    {
        segs.remove(0);
    }
    let mut best: Option<(usize, &Value)> = None;
    for (template, item) in DOC["paths"].as_object()? {
        let parts: Vec<&str> = template.split('/').filter(|s| !s.is_empty()).collect();
        if parts.len() != segs.len() {
            continue;
        }
        let literal = parts.iter().filter(|p| !p.starts_with('{')).count();
        let fits = parts.iter().zip(&segs).all(|(p, s)| p.starts_with('{') || p == s);
        if let (true, Some(op)) = (fits, item.get(method.to_ascii_lowercase())) {
            if best.is_none_or(|(l, _)| literal > l) {
                best = Some((literal, op));
            }
        }
    }
    best.map(|(_, op)| op)
}

fn resolve(schema: &Value) -> &Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => resolve(&DOC["components"]["schemas"][r.rsplit('/').next().unwrap()]),
        None => schema,
    }
}

/// The subset of JSON Schema the document uses: type (or a list of types), properties,
/// required, items, enum, $ref. Returns where the value breaks the schema.
fn violation(schema: &Value, v: &Value, at: &str) -> Option<String> {
    let schema = resolve(schema);
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let is = |ty: &str| match ty {
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            "null" => v.is_null(),
            _ => true,
        };
        if !types.iter().any(|t| is(t)) {
            return Some(format!("{at}: {v} is not {types:?}"));
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(v) {
            return Some(format!("{at}: {v} is not one of {allowed:?}"));
        }
    }
    if let (Some(o), Some(props)) = (v.as_object(), schema.get("properties").and_then(Value::as_object)) {
        for r in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let r = r.as_str().unwrap_or_default();
            if !o.contains_key(r) {
                return Some(format!("{at}: required {r} is missing"));
            }
        }
        for (k, s) in props {
            if let Some(found) = o.get(k).and_then(|x| violation(s, x, &format!("{at}.{k}"))) {
                return Some(found);
            }
        }
    }
    if let (Some(a), Some(items)) = (v.as_array(), schema.get("items")) {
        for (i, x) in a.iter().enumerate() {
            if let Some(found) = violation(items, x, &format!("{at}[{i}]")) {
                return Some(found);
            }
        }
    }
    None
}

/// Checks one response against the document: a documented operation must document the status
/// and its body must fit; any error, documented route or not, is `{message}`.
pub fn check(method: &str, path: &str, status: u16, body: &Value) {
    if status >= 400 {
        assert!(
            body["message"].is_string(),
            "{method} {path} {status}: an error without a message: {body}"
        );
    }
    let Some(op) = operation(method, path) else { return };
    let responses = &op["responses"];
    let documented = responses
        .get(status.to_string())
        .or_else(|| responses.get(format!("{}XX", status / 100)))
        .unwrap_or_else(|| panic!("{method} {path}: status {status} is not in docs/openapi.json"));
    let schema = &documented["content"]["application/json"]["schema"];
    if let Some(why) = violation(schema, body, "body") {
        panic!("{method} {path} {status} does not fit docs/openapi.json: {why}\n{body}");
    }
}

#[test]
fn the_checker_finds_what_breaks_the_document() {
    assert!(operation("GET", "/2024-03/users/u1/token?ttl=60").is_some());
    assert!(operation("GET", "/users/batch").is_some(), "a user named batch");
    assert!(operation("POST", "/users/batch").unwrap()["summary"]
        .as_str()
        .unwrap()
        .contains("1000"));
    let user = serde_json::json!({ "userId": "u", "username": "n", "fullName": null });
    check("GET", "/users/u", 200, &user);
    let bad = serde_json::json!({ "userId": "u", "username": 7, "fullName": null });
    let caught = std::panic::catch_unwind(|| check("GET", "/users/u", 200, &bad));
    assert!(caught.is_err(), "a number where the document says string");
    let missing = serde_json::json!({ "userId": "u", "fullName": null });
    assert!(std::panic::catch_unwind(|| check("GET", "/users/u", 200, &missing)).is_err());
    assert!(std::panic::catch_unwind(|| check("GET", "/users/u", 404, &serde_json::json!({}))).is_err());
}

#[test]
fn schemathesis_finds_no_server_error_and_no_response_outside_the_document() {
    let s = Server::start();
    let schemathesis = crate::peers::python().with_file_name("schemathesis");
    let doc = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    let seed = std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261201".into());
    let out = Command::new(schemathesis)
        .arg("run")
        .arg(&doc)
        .args(["--url", &s.base])
        .args(["-H", &format!("Authorization: Bearer {}", s.key)])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
        ])
        .args(["--max-examples", "20", "--seed", &seed, "--no-color"])
        .output()
        .expect("schemathesis runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis (seed {seed}) found failures:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let count = |label: &str| -> String {
        let at = text.find(label).unwrap_or_else(|| panic!("no {label:?} in:\n{text}")) + label.len();
        text[at..].split_whitespace().next().unwrap().to_string()
    };
    let selected = count("Selected: ");
    let total = selected.split('/').nth(1).unwrap();
    assert_eq!(count("Tested: "), total, "every operation was tested:\n{text}");
    let documented: usize = DOC["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|i| i.as_object().unwrap().len())
        .sum();
    assert_eq!(total, documented.to_string());
}
