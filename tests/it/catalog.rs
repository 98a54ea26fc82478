//! What the SDKs read about integrations: per-user shapes, versions and upgrades, template
//! workflows by id, the credential-type registry, apps, events and analytics.

use crate::harness::Server;
use crate::receiver::Receiver;
use serde_json::{json, Value};

const ICON: &str = "data:image/svg+xml;base64,PHN2Zy8+";

/// Two template workflows, one on an event, one manual; `path` goes into the first block's URL
/// so that two saves can differ.
fn crm(url: &str, path: &str) -> Value {
    json!({
        "name": "CRM",
        "app": "crm",
        "icon": ICON,
        "credentialType": "crmKey",
        "credentialTypes": [{
            "name": "crmKey", "displayName": "CRM API key", "icon": "https://crm.example/icon.png",
            "properties": [
                { "name": "apiKey", "displayName": "API key", "description": "From the CRM's settings", "required": true, "secret": true },
                { "name": "region", "displayName": "Region", "required": false }
            ]
        }],
        "workflows": [
            { "name": "Sync", "trigger": { "type": "event", "event": "contact.created", "description": "A contact was made", "body": { "email": "a@b.c" } },
              "blocks": [{ "name": "Push", "type": "http", "method": "POST", "url": format!("{url}/{path}"), "credentialType": "crmKey" }] },
            { "name": "Report", "blocks": [{ "name": "Boom", "type": "fail", "message": "no report", "icon": "https://x.example/b.png" }] }
        ]
    })
}

fn key_credential() -> Value {
    json!({ "type": "crmKey", "data": { "apiKey": "k-1" } })
}

#[test]
fn integrations_answer_per_user_what_the_sdk_models_read() {
    let s = Server::start();
    let iid = s.create_integration(crm("http://127.0.0.1:9", "v1"));
    let user = s.create_user("shape");
    let other = s.create_user("stranger");
    s.post(&format!("/users/{user}/credentials"), key_credential());
    let installed = s.install(&user, &iid);
    s.req(
        "PUT",
        "/workflows/deactivate",
        Some(&json!({ "userId": user, "workflowId": installed[1] })),
    );

    let check = |i: &Value, who: &str| {
        assert_eq!(i["integrationId"], iid.as_str(), "{who}");
        assert_eq!(i["app"], "crm");
        assert_eq!(i["icon"], ICON);
        assert_eq!(i["installed"], true, "{who}");
        let w = i["workflows"].as_array().unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(
            (w[0]["installed"].clone(), w[0]["active"].clone()),
            (json!(true), json!(true)),
            "{who}"
        );
        assert_eq!(
            (w[1]["installed"].clone(), w[1]["active"].clone()),
            (json!(true), json!(false)),
            "{who}"
        );
        assert_eq!(w[0]["version"], 1);
        assert_eq!(w[0]["installedVersion"], 1);
        assert_eq!(
            w[0]["blocks"][0]["icon"], ICON,
            "a block without an icon shows its app's"
        );
        assert_eq!(w[1]["blocks"][0]["icon"], "https://x.example/b.png");
    };
    // With an API key and userId, on both routes and under the SDKs' version prefixes.
    for prefix in ["", "/2024-03", "/2023-12", "/2023-06"] {
        let one = s.get(&format!("{prefix}/integrations/{iid}?userId={user}"));
        assert_eq!(one.status, 200, "{}", one.json);
        check(&one.json["data"], "key, get");
        let list = s.get(&format!("{prefix}/integrations?userId={user}"));
        check(&list.json["data"][0], "key, list");
    }
    // With the user's token, the token's user.
    let token = s.token(&user);
    check(
        &s.as_user(&token, "GET", &format!("/integrations/{iid}"), None).json["data"],
        "token, get",
    );
    check(
        &s.as_user(&token, "GET", "/2024-03/integrations", None).json["data"][0],
        "token, list",
    );
    // Another user has installed nothing.
    let theirs = s.get(&format!("/integrations/{iid}?userId={other}")).json["data"].clone();
    assert_eq!(theirs["installed"], false);
    assert_eq!(theirs["workflows"][0]["installed"], false);
    assert_eq!(theirs["workflows"][0]["active"], false);
    assert_eq!(theirs["workflows"][0]["installedVersion"], Value::Null);
    // A token may not ask about another user; an unknown user is 404.
    assert_eq!(
        s.as_user(&token, "GET", &format!("/integrations?userId={other}"), None)
            .status,
        403
    );
    assert_eq!(s.get("/integrations?userId=nobody").status, 404);
}

#[test]
fn each_save_is_a_version_and_a_workflow_upgrades_to_the_newest() {
    let s = Server::start();
    let rx = Receiver::start();
    let iid = s.create_integration(crm(&rx.url, "v1"));
    let user = s.create_user("upgrader");
    s.post(&format!("/users/{user}/credentials"), key_credential());
    let wf = s.install(&user, &iid)[0].clone();

    // The same definition again is not a new version; a changed one is.
    assert_eq!(s.post("/integrations", crm(&rx.url, "v1")).json["version"], 1);
    let saved = s.post("/integrations", crm(&rx.url, "v2"));
    assert_eq!(
        (saved.json["integrationId"].clone(), saved.json["version"].clone()),
        (json!(iid), json!(2))
    );

    let got = s.get(&format!("/workflows/{wf}?userId={user}")).json["data"].clone();
    assert_eq!(
        (got["version"].clone(), got["installedVersion"].clone()),
        (json!(2), json!(1))
    );
    let versions = s.get(&format!("/2024-03/workflows/{wf}/versions?userId={user}"));
    assert_eq!(versions.status, 200, "{}", versions.json);
    let v = versions.json["data"].as_array().unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(v[0]["versionName"], "v1");
    assert_eq!(v[0]["status"], "installed");
    assert_eq!(v[1]["status"], "latest");
    assert!(v[1]["versionId"].as_str().is_some() && v[1]["lastModified"].as_str().unwrap().ends_with('Z'));

    // Until upgraded, the user's workflow runs the version it was installed from.
    s.run_and_wait_as(&s.key, &user, &wf, json!({}));
    assert_eq!(rx.requests().last().unwrap().path, "/v1");
    let up = s.req("PUT", &format!("/workflows/{wf}/upgrade?userId={user}"), None);
    assert_eq!(up.status, 200, "{}", up.json);
    assert_eq!(up.json["upgraded"], true);
    let got = s.get(&format!("/workflows/{wf}?userId={user}")).json["data"].clone();
    assert_eq!(got["installedVersion"], 2);
    s.run_and_wait_as(&s.key, &user, &wf, json!({}));
    assert_eq!(rx.requests().last().unwrap().path, "/v2");
    // Again: nothing to do.
    let again = s.req("PUT", &format!("/workflows/{wf}/upgrade?userId={user}"), None);
    assert_eq!(again.json["upgraded"], false);
    let v = s.get(&format!("/workflows/{wf}/versions?userId={user}")).json["data"].clone();
    assert_eq!(
        (v[0]["status"].clone(), v[1]["status"].clone()),
        (json!("older"), json!("installed"))
    );
    // A user token upgrades its own workflow only.
    let other = s.create_user("other-up");
    let token = s.token(&other);
    assert_eq!(
        s.as_user(&token, "PUT", &format!("/workflows/{wf}/upgrade"), None)
            .status,
        404
    );
}

#[test]
fn a_template_workflow_is_readable_by_id_with_a_key_and_any_user_token() {
    let s = Server::start();
    let created = s.post("/integrations", crm("http://127.0.0.1:9", "v1"));
    let template = created.json["workflows"][0]["workflowId"].as_str().unwrap().to_string();
    let user = s.create_user("viewer");
    for r in [
        s.get(&format!("/workflows/{template}")),
        s.as_user(&s.token(&user), "GET", &format!("/workflows/{template}"), None),
    ] {
        assert_eq!(r.status, 200, "{}", r.json);
        let d = &r.json["data"];
        assert_eq!(d["workflowId"], template.as_str());
        assert_eq!(d["name"], "Sync");
        assert_eq!(d["installed"], false);
        assert_eq!(d["parentWorkflowId"], Value::Null);
        assert_eq!(d["blocks"][0]["name"], "Push");
        assert!(d["blocks"][0].get("url").is_none(), "templates show block summaries");
    }
    // Not across environments.
    let prod = s.new_key(ingot::store::Env::Production);
    assert_eq!(
        s.req_as(&prod, "GET", &format!("/workflows/{template}"), None).status,
        404
    );
}

#[test]
fn credential_types_are_a_registry_and_credentials_are_checked_against_it() {
    let s = Server::start();
    let listed = s.get("/2024-03/metadata/credentials");
    assert_eq!(listed.status, 200);
    let names: Vec<&str> = listed.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for builtin in ["httpHeaderAuth", "bearerToken", "basicAuth", "apiKey", "oauth2"] {
        assert!(names.contains(&builtin), "{names:?}");
    }
    assert!(!names.contains(&"crmKey"), "not declared yet");
    let oauth = listed.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "oauth2")
        .unwrap()
        .clone();
    assert_eq!(oauth["isOauth"], true);
    assert_eq!(oauth["properties"][0]["name"], "accessToken");
    assert_eq!(oauth["properties"][0]["secret"], true);

    s.create_integration(crm("http://127.0.0.1:9", "v1"));
    let by_app = s.get("/metadata/credentials/crm");
    assert_eq!(by_app.status, 200, "{}", by_app.json);
    let t = &by_app.json["data"];
    assert_eq!(t["name"], "crmKey");
    assert_eq!(t["isOauth"], false);
    assert_eq!(t["icon"], ICON, "the app's icon");
    assert_eq!(t["properties"][0]["displayName"], "API key");
    assert_eq!(t["properties"][0]["description"], "From the CRM's settings");
    assert_eq!(t["properties"][0]["required"], true);
    assert_eq!(
        s.get("/metadata/credentials/basicAuth").json["data"]["name"],
        "basicAuth"
    );
    assert_eq!(s.get("/metadata/credentials/nothing").status, 404);

    let user = s.create_user("checked");
    let path = format!("/users/{user}/credentials");
    assert_eq!(s.post(&path, key_credential()).status, 200, "a declared type");
    let missing = s.post(&path, json!({ "type": "crmKey", "data": { "region": "eu" } }));
    assert_eq!(missing.status, 422);
    assert!(
        missing.message().contains("data.apiKey is required"),
        "{}",
        missing.message()
    );
    let unknown = s.post(
        &path,
        json!({ "type": "basicAuth", "data": { "username": "u", "password": "p", "pin": "1234" } }),
    );
    assert_eq!(unknown.status, 422);
    assert!(
        unknown.message().contains("data.pin is not a property"),
        "{}",
        unknown.message()
    );
    assert!(!unknown.message().contains("1234"), "no value in the message");
    let no_type = s.post(
        "/headless/credentials",
        json!({ "userId": user, "credential": { "type": "teleport", "data": {} } }),
    );
    assert_eq!(no_type.status, 422);
    assert!(no_type.message().contains("teleport"), "{}", no_type.message());
    // Nothing refused was stored.
    assert_eq!(s.get(&path).json["data"].as_array().unwrap().len(), 1);
    // An integration may not name a type that does not exist.
    let mut bad = crm("http://x", "v");
    bad["name"] = json!("bad");
    bad["credentialType"] = json!("nowhere");
    let r = s.post("/integrations", bad);
    assert_eq!(r.status, 422);
    assert!(r.message().contains("credentialType"), "{}", r.message());
    // Declared types belong to their environment.
    let prod = s.new_key(ingot::store::Env::Production);
    let theirs = s.req_as(&prod, "GET", "/metadata/credentials", None);
    assert!(!theirs.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "crmKey"));
}

#[test]
fn apps_and_events_list_what_the_environments_integrations_use() {
    let s = Server::start();
    let iid = s.create_integration(crm("http://127.0.0.1:9", "v1"));
    for path in ["/metadata/apps", "/2023-06/apps"] {
        let apps = s.get(path);
        assert_eq!(apps.status, 200, "{path}");
        let a = &apps.json["data"][0];
        assert_eq!(a["app"], "crm");
        assert_eq!(a["icon"], ICON);
        assert_eq!(a["integrations"][0]["integrationId"], iid.as_str());
    }
    let user = s.create_user("evs");
    let token = s.token(&user);
    for r in [s.get("/2024-03/events"), s.as_user(&token, "GET", "/events", None)] {
        assert_eq!(r.status, 200);
        let e = r.json["data"].as_array().unwrap();
        assert_eq!(e.len(), 1, "only event triggers: {e:?}");
        assert_eq!(e[0]["name"], "contact.created");
        assert_eq!(e[0]["description"], "A contact was made");
        assert_eq!(e[0]["body"]["email"], "a@b.c");
    }
}

#[test]
fn analytics_count_stored_runs_app_calls_and_errors() {
    let s = Server::start();
    let rx = Receiver::start();
    let created = s.post("/integrations", crm(&rx.url, "v1"));
    let iid = created.json["integrationId"].as_str().unwrap().to_string();
    let template = created.json["workflows"][1]["workflowId"].as_str().unwrap().to_string();
    let (a, b) = (s.create_user("an-a"), s.create_user("an-b"));
    let (mut sync, mut report) = (Vec::new(), Vec::new());
    for u in [&a, &b] {
        s.post(&format!("/users/{u}/credentials"), key_credential());
        let wfs = s.install(u, &iid);
        s.run_and_wait_as(&s.key, u, &wfs[0], json!({}));
        sync.push(wfs[0].clone());
        report.push(wfs[1].clone());
    }
    s.run_and_wait_as(&s.key, &a, &report[0], json!({}));
    s.run_and_wait_as(&s.key, &a, &report[0], json!({}));
    s.run_and_wait_as(&s.key, &b, &report[1], json!({}));
    assert_eq!(rx.requests().len(), 2, "one app call per user");
    let one = s.get(&format!("/2024-03/workflows/{}/analytics", sync[0]));
    assert_eq!(one.status, 200, "{}", one.json);
    assert_eq!(
        one.json,
        json!({ "totalAppActions": 1, "totalWorkflowRuns": 1, "totalErrors": 0 })
    );
    let failing = s.get(&format!("/workflows/{}/analytics", report[0])).json;
    assert_eq!(
        failing,
        json!({ "totalAppActions": 0, "totalWorkflowRuns": 2, "totalErrors": 2 })
    );
    // By the template id: every user's copy.
    let all = s.get(&format!("/workflows/{template}/analytics")).json;
    assert_eq!(
        all,
        json!({ "totalAppActions": 0, "totalWorkflowRuns": 3, "totalErrors": 3 })
    );
    assert_eq!(s.get("/workflows/0123456789abcdef01234567/analytics").status, 404);
}

#[test]
fn the_older_credential_list_and_the_unified_api_answer_clearly() {
    let s = Server::start();
    let user = s.create_user("older");
    s.post(
        &format!("/users/{user}/credentials"),
        json!({ "type": "apiKey", "data": { "apiKey": "k" } }),
    );
    let r = s.get(&format!("/credentials?userId={user}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.json["data"][0]["type"], "apiKey");
    assert_eq!(s.get("/credentials").status, 422, "userId is required with a key");
    for path in ["/one/crm/contacts", "/2023-03/one/connections"] {
        let r = s.get(path);
        assert_eq!(r.status, 404, "{path}");
        assert!(r.message().contains("Unified API"), "{}", r.message());
    }
}
