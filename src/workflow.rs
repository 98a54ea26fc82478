//! Workflow definitions: integration templates, triggers and blocks, parsed and checked once
//! when they come in, and the `{{data.path}}` placeholders inside them.

use crate::ids;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Why an integration definition cannot be used; the message names the field by its path.
#[derive(Debug, thiserror::Error)]
pub enum DefError {
    /// A field of the wrong JSON type.
    #[error("{0}")]
    Malformed(String),
    /// Well-formed, but not a valid definition.
    #[error("{0}")]
    Invalid(String),
}

/// The block types a workflow may use.
pub const BLOCK_TYPES: &[&str] = &["http", "fail"];
/// HTTP methods an `http` block may use.
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];
/// Default and longest time an `http` block waits for its reply.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
pub const MAX_TIMEOUT_MS: u64 = 60_000;

/// One step of a workflow. Fields beyond `id`, `name`, `type` and `icon` belong to one type.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Block {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Block {
    /// The documented summary `{id, name, type, icon}`.
    pub fn summary(&self) -> Value {
        serde_json::json!({ "id": self.id, "name": self.name, "type": self.kind, "icon": self.icon })
    }

    /// Every placeholder path in the block (`data.a.b` → `a.b`; `data` alone → empty).
    pub fn placeholders(&self) -> Vec<String> {
        let mut found = Vec::new();
        let mut scan = |s: &str| {
            found.extend(scan_placeholders(s).into_iter().flatten());
        };
        self.url.iter().for_each(|u| scan(u));
        self.headers.values().for_each(|v| scan(v));
        if let Some(b) = &self.body {
            visit_strings(b, &mut |s| scan(s));
        }
        found
    }
}

/// A workflow of an integration template.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TemplateWorkflow {
    /// The template workflow's id: installed copies carry it as `parentWorkflowId`.
    pub workflow_id: String,
    pub name: String,
    pub trigger: Value,
    pub blocks: Vec<Block>,
}

/// A checked integration definition.
#[derive(Debug, Clone)]
pub struct IntegrationDef {
    pub name: String,
    pub app: String,
    pub credential_type: Option<String>,
    /// The app's icon: an http(s) URL or a `data:image/` URI.
    pub icon: Option<String>,
    /// Credential types this integration adds to its environment.
    pub credential_types: Vec<crate::credtypes::CredentialType>,
    /// Its OAuth 2.0 provider, and the client secret when the definition gives one.
    pub oauth: Option<crate::oauth::Provider>,
    pub oauth_secret: Option<String>,
    pub workflows: Vec<TemplateWorkflow>,
}

/// The event a trigger listens for, if it is an event trigger (`{"type":"event","event":E}`).
pub fn trigger_event(trigger: &Value) -> Option<&str> {
    (trigger.get("type")?.as_str()? == "event").then(|| trigger.get("event")?.as_str())?
}

fn bad_type(path: &str, what: &str) -> DefError {
    DefError::Malformed(format!("{path} must be {what}"))
}

fn invalid(path: &str, problem: &str) -> DefError {
    DefError::Invalid(format!("{path} {problem}"))
}

fn string_at<'a>(m: &'a Map<String, Value>, field: &str, path: &str) -> Result<Option<&'a str>, DefError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad_type(&format!("{path}.{field}"), "a string")),
    }
}

fn required_string<'a>(m: &'a Map<String, Value>, field: &str, path: &str) -> Result<&'a str, DefError> {
    match string_at(m, field, path)? {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(invalid(&format!("{path}.{field}"), "is required")),
    }
}

/// Parses and checks an integration body (`{name, app, credentialType?, workflows}`).
/// Template workflow ids and block ids are minted where missing.
pub fn parse_integration(m: &Map<String, Value>) -> Result<IntegrationDef, DefError> {
    let name = required_string(m, "name", "integration")?.to_string();
    let app = required_string(m, "app", "integration")?.to_string();
    let credential_type = string_at(m, "credentialType", "integration")?.map(str::to_string);
    let icon = string_at(m, "icon", "integration")?.map(str::to_string);
    if let Some(icon) = &icon {
        crate::credtypes::check_icon(icon, "integration.icon")?;
    }
    let credential_types = crate::credtypes::parse_declared(m.get("credentialTypes"))?;
    let (oauth, oauth_secret) = match crate::oauth::parse(m.get("oauth"))? {
        Some((p, secret)) => (Some(p), secret),
        None => (None, None),
    };
    if let Some(t) = &credential_type {
        let known = crate::credtypes::builtins()
            .iter()
            .chain(&credential_types)
            .any(|k| &k.name == t);
        if !known {
            return Err(invalid(
                "integration.credentialType",
                &format!(
                    "{t:?} is neither a built-in credential type nor one this integration declares in credentialTypes"
                ),
            ));
        }
    }
    let workflows = match m.get("workflows") {
        None | Some(Value::Null) => return Err(invalid("integration.workflows", "is required")),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(bad_type("integration.workflows", "an array")),
    };
    if workflows.is_empty() {
        return Err(invalid("integration.workflows", "must hold at least one workflow"));
    }
    let mut parsed = Vec::with_capacity(workflows.len());
    for (i, w) in workflows.iter().enumerate() {
        let path = format!("workflows[{i}]");
        let w = w.as_object().ok_or_else(|| bad_type(&path, "an object"))?;
        let wname = required_string(w, "name", &path)?.to_string();
        if parsed.iter().any(|p: &TemplateWorkflow| p.name == wname) {
            return Err(invalid(
                &format!("{path}.name"),
                &format!("{wname:?} is used by two workflows"),
            ));
        }
        let trigger = parse_trigger(w.get("trigger"), &format!("{path}.trigger"))?;
        let blocks = match w.get("blocks") {
            Some(Value::Array(b)) if !b.is_empty() => b,
            Some(Value::Array(_)) | None | Some(Value::Null) => {
                return Err(invalid(&format!("{path}.blocks"), "must hold at least one block"))
            }
            Some(_) => return Err(bad_type(&format!("{path}.blocks"), "an array")),
        };
        let blocks = blocks
            .iter()
            .enumerate()
            .map(|(j, b)| parse_block(b, &format!("{path}.blocks[{j}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let workflow_id = match string_at(w, "workflowId", &path)? {
            Some(id) if ids::is_object_id(id) => id.to_string(),
            _ => ids::object_id(),
        };
        parsed.push(TemplateWorkflow {
            workflow_id,
            name: wname,
            trigger,
            blocks,
        });
    }
    Ok(IntegrationDef {
        name,
        app,
        credential_type,
        icon,
        credential_types,
        oauth,
        oauth_secret,
        workflows: parsed,
    })
}

fn parse_trigger(v: Option<&Value>, path: &str) -> Result<Value, DefError> {
    match v {
        None | Some(Value::Null) => Ok(serde_json::json!({ "type": "manual" })),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(serde_json::json!({ "type": s })),
        Some(Value::Object(o)) => {
            let kind = required_string(o, "type", path)?;
            if kind == "event" {
                required_string(o, "event", path)?;
            }
            Ok(Value::Object(o.clone()))
        }
        Some(_) => Err(bad_type(path, "a string or an object with a type")),
    }
}

/// Parses and checks one block.
pub fn parse_block(v: &Value, path: &str) -> Result<Block, DefError> {
    let m = v.as_object().ok_or_else(|| bad_type(path, "an object"))?;
    let kind = required_string(m, "type", path)?;
    if !BLOCK_TYPES.contains(&kind) {
        return Err(invalid(
            &format!("{path}.type"),
            &format!("{kind:?} is not a block type (known: {})", BLOCK_TYPES.join(", ")),
        ));
    }
    let id = match string_at(m, "id", path)? {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => ids::uuid_v4(),
    };
    let mut block = Block {
        id,
        name: string_at(m, "name", path)?.unwrap_or(kind).to_string(),
        kind: kind.to_string(),
        icon: match string_at(m, "icon", path)? {
            Some(icon) => {
                crate::credtypes::check_icon(icon, &format!("{path}.icon"))?;
                Some(icon.to_string())
            }
            None => None,
        },
        method: None,
        url: None,
        headers: BTreeMap::new(),
        body: None,
        credential_id: None,
        credential_type: None,
        timeout_ms: None,
        message: None,
    };
    match kind {
        "http" => {
            let method = string_at(m, "method", path)?.unwrap_or("GET").to_ascii_uppercase();
            if !METHODS.contains(&method.as_str()) {
                return Err(invalid(
                    &format!("{path}.method"),
                    &format!("{method:?} is not one of {}", METHODS.join(", ")),
                ));
            }
            let url = required_string(m, "url", path)?;
            check_placeholders(url, &format!("{path}.url"))?;
            let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else {
                return Err(invalid(&format!("{path}.url"), "must start with http:// or https://"));
            };
            // Run data fills the path, query, headers and body, never the scheme or the host:
            // the integration, not its input, decides where a block's request goes.
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            if authority.contains("{{") {
                return Err(invalid(
                    &format!("{path}.url"),
                    "may not take its host from a placeholder; placeholders fill the path, query, headers and body",
                ));
            }
            match m.get("headers") {
                None | Some(Value::Null) => {}
                Some(Value::Object(h)) => {
                    for (k, v) in h {
                        let hp = format!("{path}.headers.{k}");
                        if !crate::outbound::is_header_name(k) || crate::outbound::is_reserved_header(k) {
                            return Err(invalid(&hp, "is not a header a block may set"));
                        }
                        let v = v.as_str().ok_or_else(|| bad_type(&hp, "a string"))?;
                        check_placeholders(v, &hp)?;
                        block.headers.insert(k.clone(), v.to_string());
                    }
                }
                Some(_) => return Err(bad_type(&format!("{path}.headers"), "an object")),
            }
            if let Some(body) = m.get("body").filter(|b| !b.is_null()) {
                let mut problem = Ok(());
                visit_strings(body, &mut |s| {
                    if problem.is_ok() {
                        problem = check_placeholders(s, &format!("{path}.body"));
                    }
                });
                problem?;
                block.body = Some(body.clone());
            }
            block.credential_id = string_at(m, "credentialId", path)?.map(str::to_string);
            block.credential_type = string_at(m, "credentialType", path)?.map(str::to_string);
            block.timeout_ms = match m.get("timeoutMs") {
                None | Some(Value::Null) => None,
                Some(t) => match t.as_u64() {
                    Some(ms) if (1..=MAX_TIMEOUT_MS).contains(&ms) => Some(ms),
                    _ => {
                        return Err(invalid(
                            &format!("{path}.timeoutMs"),
                            &format!("must be 1..{MAX_TIMEOUT_MS}"),
                        ))
                    }
                },
            };
            block.method = Some(method);
            block.url = Some(url.to_string());
        }
        "fail" => {
            block.message = Some(string_at(m, "message", path)?.unwrap_or("Workflow failed").to_string());
        }
        _ => unreachable!("checked against BLOCK_TYPES"),
    }
    Ok(block)
}

/// Calls `f` on every string inside a JSON value.
fn visit_strings(v: &Value, f: &mut impl FnMut(&str)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter().for_each(|x| visit_strings(x, f)),
        Value::Object(o) => o.values().for_each(|x| visit_strings(x, f)),
        _ => {}
    }
}

/// The placeholders in `s`: `Ok(path)` for `{{data.path}}`, `Err(text)` for anything else.
fn scan_placeholders(s: &str) -> Vec<Result<String, String>> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push(Err(after.to_string()));
            break;
        };
        let inner = after[..end].trim();
        out.push(match inner.strip_prefix("data") {
            Some("") => Ok(String::new()),
            Some(p) if p.starts_with('.') && p[1..].split('.').all(|seg| !seg.is_empty()) => Ok(p[1..].to_string()),
            _ => Err(inner.to_string()),
        });
        rest = &after[end + 2..];
    }
    out
}

fn check_placeholders(s: &str, path: &str) -> Result<(), DefError> {
    for p in scan_placeholders(s) {
        if let Err(text) = p {
            return Err(invalid(
                path,
                &format!("has a placeholder {{{{{text}}}}} that is not {{{{data.<path>}}}}"),
            ));
        }
    }
    Ok(())
}

/// The value at a dotted path inside `data` (array indexes allowed: `items.0.id`).
pub fn lookup<'a>(data: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(data);
    }
    path.split('.').try_fold(data, |v, seg| match v {
        Value::Object(o) => o.get(seg),
        Value::Array(a) => a.get(seg.parse::<usize>().ok()?),
        _ => None,
    })
}

/// Replaces every placeholder in `s` with its value from `data`; `encode` percent-encodes the
/// values (for URLs). A path naming nothing is an error naming the path.
pub fn render(s: &str, data: &Value, encode: bool) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let inner = after[..end].trim();
        let path = inner
            .strip_prefix("data")
            .map(|p| p.trim_start_matches('.'))
            .unwrap_or(inner);
        let value = lookup(data, path).ok_or_else(|| format!("data.{path}"))?;
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.push_str(&if encode { percent_encode(&text) } else { text });
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Renders a JSON body: a string that is exactly one placeholder takes the value itself (so
/// numbers stay numbers); other strings are interpolated.
pub fn render_json(v: &Value, data: &Value) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => {
            let t = s.trim();
            let single = t.starts_with("{{") && t.ends_with("}}") && t.matches("{{").count() == 1;
            if single {
                let inner = t[2..t.len() - 2].trim();
                let path = inner
                    .strip_prefix("data")
                    .map(|p| p.trim_start_matches('.'))
                    .unwrap_or(inner);
                lookup(data, path).cloned().ok_or_else(|| format!("data.{path}"))?
            } else {
                Value::String(render(s, data, false)?)
            }
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| render_json(x, data)).collect::<Result<_, _>>()?),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| Ok((k.clone(), render_json(x, data)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The placeholder paths of `blocks` that `data` does not have, as `data.path`.
pub fn missing_inputs(blocks: &[Block], data: &Value) -> Vec<String> {
    let mut missing: Vec<String> = blocks
        .iter()
        .flat_map(Block::placeholders)
        .filter(|p| lookup(data, p).is_none())
        .map(|p| format!("data.{p}"))
        .collect();
    missing.dedup();
    missing
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn integration(blocks: Value) -> Result<IntegrationDef, DefError> {
        let body = json!({ "name": "n", "app": "a", "workflows": [{ "name": "w", "blocks": blocks }] });
        parse_integration(body.as_object().unwrap())
    }

    fn message(e: DefError) -> (u16, String) {
        let text = e.to_string();
        (crate::error::ApiError::from(e).status(), text)
    }

    #[test]
    fn a_valid_template_gets_ids_and_defaults() {
        let def = integration(json!([{ "type": "http", "url": "http://x/{{data.id}}" }, { "type": "fail" }])).unwrap();
        let w = &def.workflows[0];
        assert!(ids::is_object_id(&w.workflow_id));
        assert_eq!(w.trigger, json!({ "type": "manual" }));
        assert_eq!(w.blocks[0].method.as_deref(), Some("GET"));
        assert_eq!(w.blocks[0].id.len(), 36);
        assert_eq!(w.blocks[1].message.as_deref(), Some("Workflow failed"));
        assert_eq!(w.blocks[0].placeholders(), vec!["id"]);
    }

    #[test]
    fn bad_blocks_are_refused_naming_the_place() {
        let (s, m) = message(integration(json!([{ "type": "teleport" }])).unwrap_err());
        assert_eq!(s, 422);
        assert!(
            m.contains("workflows[0].blocks[0].type") && m.contains("teleport"),
            "{m}"
        );
        let (s, m) = message(integration(json!([{ "type": "http" }])).unwrap_err());
        assert_eq!(s, 422);
        assert!(m.contains("blocks[0].url is required"), "{m}");
        let (s, m) = message(integration(json!([{ "type": "http", "url": "http://x/{{secrets.key}}" }])).unwrap_err());
        assert_eq!(s, 422);
        assert!(m.contains("{{secrets.key}}"), "{m}");
        let (s, _) = message(integration(json!([{ "type": "http", "url": 5 }])).unwrap_err());
        assert_eq!(s, 400);
        let (s, _) = message(integration(json!([{ "type": "http", "url": "ftp://x" }])).unwrap_err());
        assert_eq!(s, 422);
        let (s, _) = message(integration(json!([])).unwrap_err());
        assert_eq!(s, 422);
    }

    #[test]
    fn render_fills_placeholders_and_names_missing_ones() {
        let data = json!({ "name": "a b", "n": 3, "items": [{ "id": "x" }] });
        assert_eq!(render("/u/{{data.name}}", &data, true).unwrap(), "/u/a%20b");
        assert_eq!(
            render("hi {{ data.name }} #{{data.n}}", &data, false).unwrap(),
            "hi a b #3"
        );
        assert_eq!(render("{{data.items.0.id}}", &data, false).unwrap(), "x");
        assert_eq!(render("{{data.nope}}", &data, false).unwrap_err(), "data.nope");
        let body = render_json(
            &json!({ "n": "{{data.n}}", "s": "n={{data.n}}", "all": "{{data}}" }),
            &data,
        )
        .unwrap();
        assert_eq!(body["n"], 3);
        assert_eq!(body["s"], "n=3");
        assert_eq!(body["all"], data);
    }

    #[test]
    fn missing_inputs_lists_paths_the_data_lacks() {
        let def =
            integration(json!([{ "type": "http", "url": "http://x/{{data.a}}", "body": { "b": "{{data.b.c}}" } }]))
                .unwrap();
        assert_eq!(
            missing_inputs(&def.workflows[0].blocks, &json!({ "a": 1 })),
            vec!["data.b.c"]
        );
        assert!(missing_inputs(&def.workflows[0].blocks, &json!({ "a": 1, "b": { "c": 2 } })).is_empty());
    }

    #[test]
    fn event_triggers_name_their_event() {
        assert_eq!(
            trigger_event(&json!({ "type": "event", "event": "order.created" })),
            Some("order.created")
        );
        assert_eq!(trigger_event(&json!({ "type": "manual" })), None);
        assert!(parse_trigger(Some(&json!({ "type": "event" })), "t").is_err());
    }
}
