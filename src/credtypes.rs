//! Credential types: what a credential of each type holds, for the modal's form and for
//! checking `data` when a credential is stored. Five are built in; an integration may declare
//! its own (`credentialTypes` in its definition), visible in its environment.

use crate::workflow::DefError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::LazyLock;

/// One field of a credential's `data`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Property {
    pub name: String,
    pub display_name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub required: bool,
    /// Shown masked in forms; every field is sealed at rest either way.
    #[serde(default)]
    pub secret: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialType {
    pub name: String,
    pub display_name: String,
    #[serde(default)]
    pub icon: Option<String>,
    #[serde(default)]
    pub is_oauth: bool,
    pub properties: Vec<Property>,
}

fn prop(name: &str, display_name: &str, description: &str, required: bool, secret: bool) -> Property {
    Property {
        name: name.into(),
        display_name: display_name.into(),
        description: description.into(),
        required,
        secret,
    }
}

fn builtin(name: &str, display_name: &str, is_oauth: bool, properties: Vec<Property>) -> CredentialType {
    CredentialType {
        name: name.into(),
        display_name: display_name.into(),
        icon: None,
        is_oauth,
        properties,
    }
}

static BUILTINS: LazyLock<Vec<CredentialType>> = LazyLock::new(|| {
    vec![
        builtin(
            "httpHeaderAuth",
            "HTTP header",
            false,
            vec![
                prop(
                    "fieldName",
                    "Header name",
                    "The header the app expects the key in, such as X-Api-Key",
                    true,
                    false,
                ),
                prop("value", "Key", "The key or token the app gave you", true, true),
            ],
        ),
        builtin(
            "bearerToken",
            "Bearer token",
            false,
            vec![prop("token", "Token", "The access token the app gave you", true, true)],
        ),
        builtin(
            "basicAuth",
            "Username and password",
            false,
            vec![
                prop("username", "Username", "Your username at the app", true, false),
                prop("password", "Password", "Your password at the app", true, true),
            ],
        ),
        builtin(
            "apiKey",
            "API key",
            false,
            vec![prop(
                "apiKey",
                "API key",
                "The API key from your account at the app",
                true,
                true,
            )],
        ),
        builtin(
            "oauth2",
            "OAuth 2.0",
            true,
            vec![
                prop(
                    "accessToken",
                    "Access token",
                    "Given by the app when you connect",
                    true,
                    true,
                ),
                prop(
                    "refreshToken",
                    "Refresh token",
                    "Given with the access token, to renew it",
                    false,
                    true,
                ),
                prop(
                    "expiresAt",
                    "Expires at",
                    "When the access token expires (RFC 3339)",
                    false,
                    false,
                ),
            ],
        ),
    ]
});

/// The built-in types.
pub fn builtins() -> &'static [CredentialType] {
    &BUILTINS
}

/// The names a credential's fields may have to be usable by an `http` block (see
/// `engine::credential_header`); a declared type must hold one usable combination.
const USABLE: &[&[&str]] = &[
    &["fieldName", "value"],
    &["token"],
    &["apiKey"],
    &["accessToken"],
    &["username", "password"],
];

/// Checks `data` against a type: every required property present as a non-empty string,
/// nothing the type does not name. The message names the property, never a value.
pub fn check_data(t: &CredentialType, data: &Map<String, Value>) -> Result<(), String> {
    for p in &t.properties {
        match data.get(&p.name) {
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(Value::String(_)) | None | Some(Value::Null) if !p.required => {}
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err(format!("data.{} is required for credential type {}", p.name, t.name))
            }
            Some(_) => return Err(format!("data.{} must be a string", p.name)),
        }
    }
    if let Some(unknown) = data.keys().find(|k| !t.properties.iter().any(|p| &p.name == *k)) {
        let known: Vec<&str> = t.properties.iter().map(|p| p.name.as_str()).collect();
        return Err(format!(
            "data.{unknown} is not a property of credential type {} (it has {})",
            t.name,
            known.join(", ")
        ));
    }
    Ok(())
}

/// Parses the `credentialTypes` an integration declares. A declared type may not reuse a
/// built-in name, and must hold fields an `http` block can use.
pub fn parse_declared(v: Option<&Value>) -> Result<Vec<CredentialType>, DefError> {
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(DefError::Malformed(
                "integration.credentialTypes must be an array".into(),
            ))
        }
    };
    let mut types: Vec<CredentialType> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("credentialTypes[{i}]");
        let t: CredentialType = serde_json::from_value(item.clone()).map_err(|e| {
            DefError::Invalid(format!(
                "{path} must be {{name, displayName, icon?, isOauth?, properties: [{{name, displayName, description?, required?, secret?}}]}}: {e}"
            ))
        })?;
        let name_ok = |s: &str| {
            !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        if !name_ok(&t.name) {
            return Err(DefError::Invalid(format!(
                "{path}.name must be 1 to 128 letters, digits, '-', '_' or '.'"
            )));
        }
        if builtins().iter().any(|b| b.name == t.name) || types.iter().any(|d| d.name == t.name) {
            return Err(DefError::Invalid(format!(
                "{path}.name {:?} is already a credential type",
                t.name
            )));
        }
        for (j, p) in t.properties.iter().enumerate() {
            if !name_ok(&p.name) || t.properties[..j].iter().any(|q| q.name == p.name) {
                return Err(DefError::Invalid(format!(
                    "{path}.properties[{j}].name must be a distinct name of letters, digits, '-', '_' or '.'"
                )));
            }
        }
        let has = |n: &str| t.properties.iter().any(|p| p.name == n);
        if !USABLE.iter().any(|combo| combo.iter().all(|n| has(n))) {
            return Err(DefError::Invalid(format!(
                "{path}.properties must include fieldName and value, token, apiKey, accessToken, or username and password"
            )));
        }
        if let Some(icon) = &t.icon {
            check_icon(icon, &format!("{path}.icon"))?;
        }
        types.push(t);
    }
    Ok(types)
}

/// The longest icon (a URL or a data URI) an integration, block or type may carry.
pub const MAX_ICON: usize = 64 * 1024;

/// An icon is an `https:`/`http:` URL or a `data:image/...` URI, at most `MAX_ICON` bytes.
pub fn check_icon(icon: &str, path: &str) -> Result<(), DefError> {
    let ok_scheme = ["https://", "http://", "data:image/"]
        .iter()
        .any(|p| icon.starts_with(p));
    if !ok_scheme || icon.len() > MAX_ICON || icon.chars().any(char::is_control) {
        return Err(DefError::Invalid(format!(
            "{path} must be an http(s) URL or a data:image/ URI of at most {MAX_ICON} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn named(n: &str) -> &'static CredentialType {
        builtins().iter().find(|t| t.name == n).unwrap()
    }

    #[test]
    fn builtins_cover_the_five_kinds() {
        let names: Vec<&str> = builtins().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["httpHeaderAuth", "bearerToken", "basicAuth", "apiKey", "oauth2"]
        );
        assert!(named("oauth2").is_oauth && !named("apiKey").is_oauth);
    }

    #[test]
    fn data_must_hold_required_and_only_known_properties() {
        let t = named("httpHeaderAuth");
        assert!(check_data(t, &data(json!({ "fieldName": "X-Key", "value": "v" }))).is_ok());
        let e = check_data(t, &data(json!({ "fieldName": "X-Key" }))).unwrap_err();
        assert!(e.contains("data.value is required"), "{e}");
        let e = check_data(t, &data(json!({ "fieldName": "X-Key", "value": "" }))).unwrap_err();
        assert!(e.contains("data.value is required"), "{e}");
        let e = check_data(t, &data(json!({ "fieldName": "X", "value": "v", "extra": "s3cret" }))).unwrap_err();
        assert!(
            e.contains("data.extra is not a property") && !e.contains("s3cret"),
            "{e}"
        );
        let e = check_data(t, &data(json!({ "fieldName": "X", "value": 7 }))).unwrap_err();
        assert!(e.contains("data.value must be a string"), "{e}");
        // Optional properties may be left out.
        assert!(check_data(named("oauth2"), &data(json!({ "accessToken": "a" }))).is_ok());
    }

    #[test]
    fn declared_types_are_checked() {
        let ok = json!([{ "name": "crmKey", "displayName": "CRM key",
            "properties": [{ "name": "apiKey", "displayName": "Key", "required": true, "secret": true }] }]);
        assert_eq!(parse_declared(Some(&ok)).unwrap()[0].name, "crmKey");
        let clash =
            json!([{ "name": "apiKey", "displayName": "x", "properties": [{ "name": "apiKey", "displayName": "k" }] }]);
        assert!(parse_declared(Some(&clash))
            .unwrap_err()
            .to_string()
            .contains("already"));
        let useless =
            json!([{ "name": "t", "displayName": "x", "properties": [{ "name": "color", "displayName": "c" }] }]);
        assert!(parse_declared(Some(&useless))
            .unwrap_err()
            .to_string()
            .contains("must include"));
        let bad_icon = json!([{ "name": "t", "displayName": "x", "icon": "javascript:alert(1)",
            "properties": [{ "name": "token", "displayName": "t" }] }]);
        assert!(parse_declared(Some(&bad_icon))
            .unwrap_err()
            .to_string()
            .contains("icon"));
    }
}
