//! Integrations, installed workflows, runs against a local receiver, and the error logs they
//! leave.

use crate::harness::{count, open_db, Server};
use crate::receiver::Receiver;
use serde_json::{json, Value};

/// An integration with one workflow: an `http` block to `url` (with a placeholder) then nothing.
fn http_integration(name: &str, url: &str) -> Value {
    json!({
        "name": name,
        "app": "crm",
        "credentialType": "httpHeaderAuth",
        "workflows": [{
            "name": "Sync contact",
            "trigger": { "type": "event", "event": "contact.created" },
            "blocks": [{
                "name": "Push contact",
                "type": "http",
                "method": "POST",
                "url": format!("{url}/contacts/{{{{data.contact.id}}}}"),
                "headers": { "X-Source": "ingot {{data.source}}" },
                "body": { "email": "{{data.contact.email}}", "n": "{{data.n}}" }
            }]
        }]
    })
}

/// Creates the integration, a user with a header credential, installs it; returns
/// (user id, workflow id, template workflow id).
fn installed(s: &Server, integration: Value, username: &str, secret: &str) -> (String, String, String) {
    let i = s.post("/integrations", integration);
    assert_eq!(i.status, 200, "{}", i.json);
    let iid = i.json["integrationId"].as_str().unwrap().to_string();
    let user = s.create_user(username);
    let c = s.post(
        &format!("/users/{user}/credentials"),
        json!({ "type": "httpHeaderAuth", "data": { "fieldName": "X-Api-Key", "value": secret } }),
    );
    assert_eq!(c.status, 200);
    let r = s.post(&format!("/users/{user}/integrations/{iid}/install"), json!({}));
    assert_eq!(r.status, 200, "{}", r.json);
    let wf = r.json["data"][0].clone();
    (
        user,
        wf["workflowId"].as_str().unwrap().to_string(),
        wf["parentWorkflowId"].as_str().unwrap().to_string(),
    )
}

fn run_input() -> Value {
    json!({ "contact": { "id": "c 42", "email": "x@y.z" }, "source": "crm", "n": 7 })
}

#[test]
fn integrations_are_created_listed_read_and_deleted() {
    let s = Server::start();
    let r = s.post("/integrations", http_integration("CRM sync", "http://127.0.0.1:9"));
    assert_eq!(r.status, 200, "{}", r.json);
    let id = r.json["integrationId"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 24);
    let wf = &r.json["workflows"][0];
    assert_eq!(wf["workflowId"].as_str().unwrap().len(), 24);
    assert_eq!(wf["blocks"][0]["id"].as_str().unwrap().len(), 36, "block ids are UUIDs");
    // Saving under the same name is a new version of the same integration.
    let again = s.post("/integrations", http_integration("CRM sync", "http://x"));
    assert_eq!(again.status, 200, "{}", again.json);
    assert_eq!(again.json["integrationId"], id.as_str());
    assert_eq!(again.json["version"], 2);
    let list = s.get("/2024-03/integrations");
    assert_eq!(list.json["data"].as_array().unwrap().len(), 1);
    assert_eq!(s.get(&format!("/integrations/{id}")).json["data"]["name"], "CRM sync");
    let user = s.create_user("lister");
    let token = s.token(&user);
    let as_user = s.as_user(&token, "GET", "/integrations", None);
    assert_eq!(as_user.status, 200, "a user token may list integrations");
    assert_eq!(as_user.json["data"][0]["installed"], false);
    assert!(
        as_user.json["data"][0]["workflows"][0]["blocks"][0]
            .get("url")
            .is_none(),
        "users see block summaries"
    );
    assert_eq!(
        s.as_user(
            &token,
            "POST",
            "/integrations",
            Some(&http_integration("x", "http://x"))
        )
        .status,
        401
    );
    // Never installed: deleted without force.
    let spare = s.post("/integrations", http_integration("Spare", "http://127.0.0.1:9"));
    let spare = spare.json["integrationId"].as_str().unwrap();
    assert_eq!(s.req("DELETE", &format!("/integrations/{spare}"), None).status, 200);
    assert_eq!(s.get(&format!("/integrations/{spare}")).status, 404);
    s.post(&format!("/users/{user}/integrations/{id}/install"), json!({}));
    let refused = s.req("DELETE", &format!("/integrations/{id}"), None);
    assert_eq!(refused.status, 409, "an installed integration is not deleted silently");
    assert_eq!(
        s.req("DELETE", &format!("/integrations/{id}?force=true"), None).status,
        200
    );
    assert_eq!(
        s.get(&format!("/workflows?userId={user}")).json["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(s.get(&format!("/integrations/{id}")).status, 404);
}

#[test]
fn bad_templates_are_refused_naming_the_problem() {
    let s = Server::start();
    let mut bad = http_integration("bad", "http://x");
    bad["workflows"][0]["blocks"][0]["type"] = json!("teleport");
    let r = s.post("/integrations", bad);
    assert_eq!(r.status, 422);
    assert!(r.message().contains("teleport"), "{}", r.message());
    let mut no_url = http_integration("bad", "http://x");
    no_url["workflows"][0]["blocks"][0]
        .as_object_mut()
        .unwrap()
        .remove("url");
    let r = s.post("/integrations", no_url);
    assert_eq!(r.status, 422);
    assert!(r.message().contains("url"), "{}", r.message());
    let mut bad_placeholder = http_integration("bad", "http://x");
    bad_placeholder["workflows"][0]["blocks"][0]["url"] = json!("http://x/{{secrets.apiKey}}");
    let r = s.post("/integrations", bad_placeholder);
    assert_eq!(r.status, 422);
    assert!(r.message().contains("{{secrets.apiKey}}"), "{}", r.message());
    assert_eq!(s.post("/integrations", json!({ "name": "n", "app": "a" })).status, 422);
    assert_eq!(
        s.post("/integrations", json!({ "name": "n", "app": "a", "workflows": "many" }))
            .status,
        400
    );
    assert_eq!(s.get("/integrations").json["data"].as_array().unwrap().len(), 0);
}

#[test]
fn installing_gives_one_workflow_per_template_workflow_and_never_duplicates() {
    let s = Server::start();
    let (user, wf, parent) = installed(&s, http_integration("i", "http://x"), "inst", "k");
    let iid = s.get("/integrations").json["data"][0]["integrationId"]
        .as_str()
        .unwrap()
        .to_string();
    let got = s.get(&format!("/workflows/{wf}"));
    assert_eq!(got.status, 200);
    let w = &got.json["data"];
    for field in [
        "workflowId",
        "integrationId",
        "parentWorkflowId",
        "name",
        "trigger",
        "createdAt",
        "updatedAt",
        "installed",
        "active",
        "version",
        "installedVersion",
        "blocks",
    ] {
        assert!(w.get(field).is_some(), "Workflow lacks {field}");
    }
    assert_eq!(
        (w["installed"].as_bool(), w["active"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(w["installedVersion"], 1);
    assert!(w["installedAt"].is_string());
    assert_eq!(w["parentWorkflowId"], parent.as_str());
    let b = &w["blocks"][0];
    assert_eq!(
        (b["name"].as_str(), b["type"].as_str()),
        (Some("Push contact"), Some("http"))
    );
    let again = s.post(&format!("/users/{user}/integrations/{iid}/install"), json!({}));
    assert_eq!(again.json["data"][0]["workflowId"], wf.as_str());
    assert_eq!(
        s.get(&format!("/workflows?userId={user}")).json["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // A credential of another user cannot be bound.
    let other = s.create_user("other");
    let theirs = s.post(
        &format!("/users/{other}/credentials"),
        json!({ "type": "httpHeaderAuth", "data": { "fieldName": "X-Key", "value": "v" } }),
    );
    let cid = theirs.json["credentialId"].as_str().unwrap();
    let r = s.post(
        &format!("/users/{user}/integrations/{iid}/install"),
        json!({ "credentialId": cid }),
    );
    assert_eq!(r.status, 422);
    assert!(r.message().contains(cid));
    assert_eq!(
        s.post(
            &format!("/users/{user}/integrations/0123456789abcdef01234567/install"),
            json!({})
        )
        .status,
        404
    );
    let by_parent = s.get(&format!("/users?parentWorkflowId={parent}"));
    let ids: Vec<&str> = by_parent.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![user.as_str()], "only the user who installed it");
    let users = s.get(&format!("/workflows/{parent}/users"));
    assert_eq!(users.status, 200);
    let row = &users.json["data"][0];
    assert_eq!(row["userId"], user.as_str());
    assert_eq!(row["workflowActive"], true);
    assert_eq!(row["installedVersion"], 1);
    assert!(row["installedAt"].is_string());
}

#[test]
fn workflows_are_listed_activated_deactivated_and_deleted() {
    let s = Server::start();
    let (user, wf, _) = installed(&s, http_integration("i", "http://x"), "wfuser", "k");
    assert_eq!(s.get("/workflows").status, 422, "userId is required with an API key");
    assert_eq!(
        s.get(&format!("/workflows?userId={user}&integration=crm")).json["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.get(&format!("/workflows?userId={user}&integration=other")).json["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let r = s.req(
        "PUT",
        "/workflows/deactivate",
        Some(&json!({ "userId": user, "workflowName": "Sync contact" })),
    );
    assert_eq!(r.json, json!({ "activated": false }));
    assert_eq!(s.get(&format!("/workflows/{wf}")).json["data"]["active"], false);
    let run = s.post(
        "/run/workflow",
        json!({ "userId": user, "workflowId": wf, "data": run_input() }),
    );
    assert_eq!(run.status, 422, "an inactive workflow does not run");
    assert!(run.message().contains("not active"));
    let r = s.req(
        "PUT",
        "/workflows/activate",
        Some(&json!({ "userId": "wfuser", "workflowId": wf })),
    );
    assert_eq!(r.json, json!({ "activated": true }));
    assert_eq!(
        s.req("PUT", &format!("/users/{user}/deactivate-workflows"), None)
            .status,
        200
    );
    assert_eq!(s.get(&format!("/workflows/{wf}")).json["data"]["active"], false);
    assert_eq!(
        s.req(
            "PUT",
            "/workflows/activate",
            Some(&json!({ "userId": user, "workflowName": "nope" }))
        )
        .status,
        404
    );
    assert_eq!(
        s.req("DELETE", &format!("/workflows/{wf}?userId={user}"), None).json,
        json!({ "deleted": true })
    );
    assert_eq!(s.get(&format!("/workflows/{wf}")).status, 404);
}

#[test]
fn a_user_token_sees_and_changes_only_its_own_workflows() {
    let s = Server::start();
    let (a, wf_a, _) = installed(&s, http_integration("i", "http://x"), "ta", "k");
    let b = s.create_user("tb");
    let iid = s.get("/integrations").json["data"][0]["integrationId"]
        .as_str()
        .unwrap()
        .to_string();
    let wf_b = s.install(&b, &iid).remove(0);
    let token = s.token(&a);
    let mine = s.as_user(&token, "GET", "/workflows", None);
    assert_eq!(mine.status, 200);
    let ids: Vec<&str> = mine.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["workflowId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![wf_a.as_str()]);
    assert_eq!(
        s.as_user(&token, "GET", &format!("/workflows?userId={b}"), None).status,
        403
    );
    assert_eq!(
        s.as_user(&token, "GET", &format!("/workflows/{wf_b}"), None).status,
        404
    );
    let r = s.as_user(
        &token,
        "PUT",
        "/workflows/deactivate",
        Some(&json!({ "userId": b, "workflowId": wf_b })),
    );
    assert_eq!(r.status, 403);
    let r = s.as_user(
        &token,
        "PUT",
        "/workflows/deactivate",
        Some(&json!({ "workflowId": wf_b })),
    );
    assert_eq!(r.status, 404, "B's workflow is not among A's");
    assert_eq!(
        s.get(&format!("/workflows/{wf_b}")).json["data"]["active"],
        true,
        "B's workflow untouched"
    );
    let r = s.as_user(
        &token,
        "PUT",
        "/workflows/deactivate",
        Some(&json!({ "workflowId": wf_a })),
    );
    assert_eq!(r.json, json!({ "activated": false }));
    assert_eq!(
        s.as_user(&token, "GET", &format!("/workflows/{wf_b}/logs"), None)
            .status,
        404
    );
}

#[test]
fn a_run_fills_placeholders_and_sends_the_users_credential() {
    let s = Server::start();
    let rx = Receiver::start();
    let secret = format!("sk-{}", ingot::ids::hex(&ingot::ids::random_bytes(8)));
    let (user, wf, _) = installed(&s, http_integration("i", &rx.url), "runner", &secret);
    let r = s.post(
        "/2024-03/run/workflow",
        json!({ "userId": user, "workflowName": "Sync contact", "data": run_input() }),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["message"], "success");
    let execution = r.json["executionId"].as_str().unwrap().to_string();
    let runs = s.wait_for_runs(&wf, 1);
    let run = &runs[0];
    assert_eq!(run["executionId"], execution.as_str());
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["inputs"], run_input());
    assert_eq!(run["results"][0]["status"], "success");
    assert_eq!(run["results"][0]["output"]["statusCode"], 200);
    let got = rx.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].path, "/contacts/c%2042", "placeholder filled and encoded");
    assert_eq!(
        got[0].header("X-Api-Key"),
        Some(secret.as_str()),
        "the credential header arrives"
    );
    assert_eq!(got[0].header("X-Source"), Some("ingot crm"));
    let body: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(body, json!({ "email": "x@y.z", "n": 7 }));
    assert!(
        !s.get(&format!("/workflows/{wf}/logs"))
            .json
            .to_string()
            .contains(&secret),
        "no secret in results"
    );
    assert_eq!(s.get(&format!("/workflows/{wf}/errors")).json["data"], json!([]));
}

#[test]
fn a_bearer_token_credential_becomes_an_authorization_header() {
    let s = Server::start();
    let rx = Receiver::start();
    let mut integration = http_integration("bearer", &rx.url);
    integration["credentialType"] = json!("bearerToken");
    let i = s.post("/integrations", integration);
    let iid = i.json["integrationId"].as_str().unwrap();
    let user = s.create_user("bearer");
    s.post(
        &format!("/users/{user}/credentials"),
        json!({ "type": "bearerToken", "data": { "token": "tok-123" } }),
    );
    let wf = s
        .post(&format!("/users/{user}/integrations/{iid}/install"), json!({}))
        .json["data"][0]["workflowId"]
        .as_str()
        .unwrap()
        .to_string();
    s.post(
        "/run/workflow",
        json!({ "userId": user, "workflowId": wf, "data": run_input() }),
    );
    s.wait_for_runs(&wf, 1);
    assert_eq!(rx.requests()[0].header("Authorization"), Some("Bearer tok-123"));
}

#[test]
fn a_403_reply_fails_the_run_and_leaves_exactly_one_error_log() {
    let s = Server::start();
    let rx = Receiver::start();
    rx.answer(403);
    let (user, wf, _) = installed(&s, http_integration("i", &rx.url), "denied", "k");
    let r = s.post(
        "/run/workflow",
        json!({ "userId": user, "workflowId": wf, "data": run_input() }),
    );
    let execution = r.json["executionId"].as_str().unwrap().to_string();
    let runs = s.wait_for_runs(&wf, 1);
    assert_eq!(runs[0]["status"], "failed");
    assert_eq!(
        runs[0]["results"][0]["error"],
        "Error: Request failed with status code 403"
    );
    let errors = s.get(&format!("/workflows/{wf}/errors"));
    assert_eq!(errors.status, 200);
    let list = errors.json["data"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    let e = &list[0];
    let block_id = s.get(&format!("/workflows/{wf}")).json["data"]["blocks"][0]["id"].clone();
    let keys: std::collections::BTreeSet<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
    let expected: std::collections::BTreeSet<&str> = [
        "_id",
        "workflowId",
        "executionId",
        "blockId",
        "blockType",
        "blockName",
        "userId",
        "error",
        "createdAt",
        "updatedAt",
        "__v",
    ]
    .into();
    assert_eq!(keys, expected);
    assert_eq!(e["_id"].as_str().unwrap().len(), 24);
    assert_eq!(e["workflowId"], wf.as_str());
    assert_eq!(e["executionId"], execution.as_str());
    assert_eq!(e["blockId"], block_id);
    assert_eq!(
        (e["blockType"].as_str(), e["blockName"].as_str()),
        (Some("http"), Some("Push contact"))
    );
    assert_eq!(e["userId"], user.as_str());
    assert_eq!(e["error"], "Error: Request failed with status code 403");
    assert_eq!(e["__v"], 0);
    let logs = s.get(&format!("/logs?workflowId={wf}"));
    assert_eq!(logs.status, 200);
    assert_eq!(logs.json["notifications"][0], *e);
    assert_eq!(
        logs.json["pagination"],
        json!({ "totalItems": 1, "totalPages": 1, "currentPage": 1, "pageSize": 10 })
    );
    assert!(logs.json["lastFetched"].is_string());
    assert_eq!(
        s.get(&format!("/workflows/{wf}/logs?error=true")).json["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // One run succeeds now; error=true still shows only the failure.
    rx.answer(200);
    s.post(
        "/run/workflow",
        json!({ "userId": user, "workflowId": wf, "data": run_input() }),
    );
    s.wait_for_runs(&wf, 2);
    assert_eq!(
        s.get(&format!("/workflows/{wf}/logs")).json["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        s.get(&format!("/workflows/{wf}/logs?error=true")).json["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(count(&open_db(&s.db_path()), "SELECT count(*) FROM error_logs"), 1);
}

#[test]
fn fail_blocks_and_refused_connections_fail_with_a_clear_message() {
    let s = Server::start();
    let gone = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap(); // closed once dropped
    let integration = json!({
        "name": "two", "app": "demo",
        "workflows": [
            { "name": "boom", "blocks": [{ "type": "fail", "name": "Stop here", "message": "Customer said no" }] },
            { "name": "nowhere", "blocks": [{ "type": "http", "name": "Call", "url": format!("http://{gone}/x") }] }
        ]
    });
    let iid = s.post("/integrations", integration).json["integrationId"]
        .as_str()
        .unwrap()
        .to_string();
    let user = s.create_user("failer");
    let wfs = s
        .post(&format!("/users/{user}/integrations/{iid}/install"), json!({}))
        .json["data"]
        .clone();
    let (boom, nowhere) = (
        wfs[0]["workflowId"].as_str().unwrap(),
        wfs[1]["workflowId"].as_str().unwrap(),
    );
    s.post("/run/workflow", json!({ "userId": user, "workflowName": "boom" }));
    s.post("/run/workflow", json!({ "userId": user, "workflowId": nowhere }));
    s.wait_for_runs(boom, 1);
    s.wait_for_runs(nowhere, 1);
    let e = &s.get(&format!("/workflows/{boom}/errors")).json["data"][0];
    assert_eq!(
        (e["error"].as_str(), e["blockType"].as_str(), e["blockName"].as_str()),
        (Some("Customer said no"), Some("fail"), Some("Stop here"))
    );
    let e = &s.get(&format!("/workflows/{nowhere}/errors")).json["data"][0];
    let msg = e["error"].as_str().unwrap();
    assert!(
        msg.starts_with("Error: ") && msg.to_lowercase().contains("refused"),
        "{msg}"
    );
    let all = s.get(&format!("/logs?associatedUserId={user}&sortBy=blockType&sortOrder=asc"));
    let types: Vec<&str> = all.json["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["blockType"].as_str().unwrap())
        .collect();
    assert_eq!(types, vec!["fail", "http"]);
    let filtered = s.get(&format!(
        "/logs?filters={}",
        urlencode(&json!({ "blockType": "fail" }).to_string())
    ));
    assert_eq!(filtered.json["pagination"]["totalItems"], 1);
    assert_eq!(s.get("/logs?sortBy=password").status, 422);
    assert_eq!(s.get("/logs?filters=notjson").status, 400);
    let page = s.get("/logs?limit=1&skip=1");
    assert_eq!(
        page.json["pagination"],
        json!({ "totalItems": 2, "totalPages": 2, "currentPage": 2, "pageSize": 1 })
    );
}

/// `GET /logs?cursor=`: a page's `nextCursor` reads the next page, for every sort (ties on the
/// sort value broken by id), with filters, and unmoved by logs written between pages.
#[test]
fn logs_page_by_cursor_through_every_log_once_in_order() {
    use ingot::store::{error_logs, Env};
    let s = Server::start();
    let (a, b) = (s.create_user("paged-a"), s.create_user("paged-b"));
    let seeded: Vec<error_logs::ErrorLog> = (0..250)
        .map(|i| {
            let user = if i % 10 == 0 { &b } else { &a };
            let kind = ["http", "fail", "code"][i % 3];
            let mut log = error_logs::new_log(
                Env::Development,
                user,
                &format!("wf-{}", i % 4),
                "ex",
                "b",
                kind,
                &format!("n{}", i % 7),
                "e",
            );
            // Eleven distinct times, so most logs tie on createdAt.
            log.created_at = 1_700_000_000_000 + (i % 11) as i64 * 1000;
            log.updated_at = log.created_at;
            log
        })
        .collect();
    s.app()
        .store
        .write(move |c| {
            for log in &seeded {
                error_logs::insert(c, log)?;
            }
            Ok(())
        })
        .unwrap();
    let ids = |page: &crate::harness::Reply| -> Vec<String> {
        page.json["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["_id"].as_str().unwrap().to_string())
            .collect()
    };
    let walk = |query: &str| -> Vec<String> {
        let mut seen = Vec::new();
        let mut page = s.get(&format!("/logs?limit=17&{query}"));
        loop {
            assert_eq!(page.status, 200, "{}", page.message());
            assert!(seen.len() <= 300, "{query}: the cursor stopped moving forward");
            seen.extend(ids(&page));
            match page.json["nextCursor"].as_str() {
                None => return seen,
                Some(c) => {
                    assert_eq!(page.json["notifications"].as_array().unwrap().len(), 17);
                    page = s.get(&format!("/logs?limit=17&{query}&cursor={c}"));
                    assert_eq!(page.json["pagination"]["currentPage"], Value::Null);
                }
            }
        }
    };
    for sort in [
        "sortBy=createdAt&sortOrder=desc",
        "sortBy=createdAt&sortOrder=asc",
        "sortBy=blockType&sortOrder=asc",
        "sortBy=userId&sortOrder=desc",
        "sortBy=updatedAt&sortOrder=asc",
        "sortBy=workflowId&sortOrder=asc",
        "sortBy=blockName&sortOrder=desc",
    ] {
        let by_cursor = walk(sort);
        let by_skip: Vec<String> = (0..3)
            .flat_map(|p| ids(&s.get(&format!("/logs?limit=100&skip={}&{sort}", p * 100))))
            .collect();
        assert_eq!(by_cursor.len(), 250, "{sort}");
        assert_eq!(by_cursor, by_skip, "{sort}: cursor pages in the order skip pages have");
    }
    assert_eq!(walk(&format!("associatedUserId={b}")).len(), 25);
    // The totals: one user's and one workflow's are kept by triggers, a combination is counted.
    let total = |query: &str| s.get(&format!("/logs?limit=1&{query}")).json["pagination"]["totalItems"].clone();
    assert_eq!(total(&format!("associatedUserId={b}")), 25);
    assert_eq!(total(&format!("associatedUserId={a}")), 225);
    assert_eq!(total("workflowId=wf-1"), 63);
    assert_eq!(total(&format!("associatedUserId={b}&workflowId=wf-0")), 13);
    assert_eq!(total("workflowId=wf-9"), 0);
    // One user's and one workflow's totals are read from the tallies, not counted: a tally
    // set by hand is what the page says.
    let set = |kind: &'static str, key: String, n: i64| {
        s.app()
            .store
            .write(move |c| {
                c.execute(
                    "UPDATE error_log_tallies SET n = ?3 WHERE kind = ?1 AND key = ?2",
                    rusqlite::params![kind, key, n],
                )?;
                Ok(())
            })
            .unwrap()
    };
    set("user", b.clone(), 999);
    set("workflow", "wf-1".into(), 998);
    assert_eq!(total(&format!("associatedUserId={b}")), 999);
    assert_eq!(total("workflowId=wf-1"), 998);
    set("user", b.clone(), 25);
    set("workflow", "wf-1".into(), 63);

    // A log written between two pages moves skip pages, not cursor pages.
    let first = s.get("/logs?limit=17");
    let cursor = first.json["nextCursor"].as_str().unwrap().to_string();
    let before = ids(&s.get("/logs?limit=34"));
    let newest = error_logs::new_log(Env::Development, &a, "wf-0", "ex", "b", "http", "n", "late");
    s.app().store.write(move |c| error_logs::insert(c, &newest)).unwrap();
    let second = s.get(&format!("/logs?limit=17&cursor={cursor}"));
    assert_eq!(ids(&second), before[17..].to_vec());
    assert_eq!(second.json["pagination"]["totalItems"], 251);
    assert_eq!(total(&format!("associatedUserId={a}")), 226);
    assert_eq!(total("workflowId=wf-0"), 64);

    // Refusals: both ways of paging at once, another sort's cursor, a made-up one.
    assert_eq!(s.get(&format!("/logs?skip=5&cursor={cursor}")).status, 422);
    let other = s.get(&format!("/logs?sortBy=blockType&cursor={cursor}"));
    assert_eq!(other.status, 422);
    assert!(other.message().contains("same sort"), "{}", other.message());
    for bad in ["nope", "W10", "WyJjcmVhdGVkQXQiLCJkZXNjIiwieCIsInkiXQ"] {
        let r = s.get(&format!("/logs?cursor={bad}"));
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.message().contains("cursor"), "{}", r.message());
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn runs_refuse_bad_input_with_a_clear_4xx() {
    let s = Server::start();
    let (user, wf, _) = installed(&s, http_integration("i", "http://127.0.0.1:9"), "picky", "k");
    let r = s.post(
        "/run/workflow",
        json!({ "userId": user, "workflowId": wf, "data": { "contact": { "id": 1 } } }),
    );
    assert_eq!(r.status, 422);
    assert!(r.message().contains("data.contact.email"), "{}", r.message());
    assert_eq!(
        s.post(
            "/run/workflow",
            json!({ "userId": user, "workflowId": "0123456789abcdef01234567" })
        )
        .status,
        404
    );
    assert_eq!(
        s.post("/run/workflow", json!({ "userId": "ghost", "workflowId": wf }))
            .status,
        404
    );
    assert_eq!(s.post("/run/workflow", json!({ "userId": user })).status, 422);
    assert_eq!(s.post("/run/workflow", json!({ "workflowId": wf })).status, 422);
    s.req("PATCH", &format!("/users/{user}"), Some(&json!({ "disabled": true })));
    let r = s.post(
        "/run/workflow",
        json!({ "userId": user, "workflowId": wf, "data": run_input() }),
    );
    assert_eq!(r.status, 403, "disabled users' workflows do not run");
    s.req("PATCH", &format!("/users/{user}"), Some(&json!({ "disabled": false })));
    // Without the credential its block needs, the run is refused up front.
    let cid = s.get(&format!("/users/{user}/credentials")).json["data"][0]["credentialId"]
        .as_str()
        .unwrap()
        .to_string();
    s.req("DELETE", &format!("/users/{user}/credentials/{cid}"), None);
    let r = s.post(
        "/run/workflow",
        json!({ "userId": user, "workflowId": wf, "data": run_input() }),
    );
    assert_eq!(r.status, 422);
    assert!(r.message().contains("httpHeaderAuth"), "{}", r.message());
    assert_eq!(
        count(&open_db(&s.db_path()), "SELECT count(*) FROM executions"),
        0,
        "nothing was queued"
    );
}

#[test]
fn events_run_every_active_workflow_listening_and_reruns_repeat_inputs() {
    let s = Server::start();
    let rx = Receiver::start();
    let (user, wf, _) = installed(&s, http_integration("i", &rx.url), "evented", "k");
    let r = s.post(
        "/run/event",
        json!({ "event": "contact.created", "userId": user, "data": run_input() }),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    let ids = r.json["executionIds"].as_array().unwrap().clone();
    assert_eq!(ids.len(), 1);
    s.wait_for_runs(&wf, 1);
    let none = s.post(
        "/run/event",
        json!({ "event": "nobody.listens", "userId": user, "data": {} }),
    );
    assert_eq!(
        (none.status, none.json["executionIds"].as_array().unwrap().len()),
        (200, 0)
    );
    let rerun = s.post(
        &format!("/workflows/{wf}/rerun/{}", ids[0].as_str().unwrap()),
        json!({}),
    );
    assert_eq!(rerun.status, 200, "{}", rerun.json);
    assert!(rerun.json["executionUuid"].is_string());
    let runs = s.wait_for_runs(&wf, 2);
    assert_eq!(runs[0]["inputs"], runs[1]["inputs"]);
    assert_eq!(rx.requests().len(), 2);
    assert_eq!(
        s.post(&format!("/workflows/{wf}/rerun/0123456789abcdef01234567"), json!({}))
            .status,
        404
    );
}

#[test]
fn deleting_a_user_leaves_no_workflow_execution_or_credential_but_keeps_error_logs_until_erased() {
    let s = Server::start();
    let rx = Receiver::start();
    rx.answer(500);
    let (user, wf, _) = installed(&s, http_integration("i", &rx.url), "doomed", "k");
    for _ in 0..3 {
        s.post(
            "/run/workflow",
            json!({ "userId": user, "workflowId": wf, "data": run_input() }),
        );
    }
    s.wait_for_runs(&wf, 3);
    let db = open_db(&s.db_path());
    let q = |table: &str, col: &str| count(&db, &format!("SELECT count(*) FROM {table} WHERE {col} = '{user}'"));
    assert_eq!(
        (
            q("workflows", "user_id"),
            q("executions", "user_id"),
            q("credentials", "user_id"),
            q("error_logs", "user_id")
        ),
        (1, 3, 1, 3)
    );
    assert_eq!(s.req("DELETE", &format!("/users/{user}"), None).status, 200);
    assert_eq!(
        (
            q("workflows", "user_id"),
            q("executions", "user_id"),
            q("credentials", "user_id")
        ),
        (0, 0, 0)
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM executions WHERE workflow_id NOT IN (SELECT id FROM workflows)"
        ),
        0,
        "no orphan executions"
    );
    assert_eq!(q("error_logs", "user_id"), 3, "error logs outlive the user");
    assert_eq!(
        s.get(&format!("/logs?associatedUserId={user}")).json["pagination"]["totalItems"],
        3
    );
    let total = || s.get("/logs").json["pagination"]["totalItems"].as_i64().unwrap();
    let before = total();
    assert!(before >= 3, "the environment's total counts the user's logs: {before}");
    let erased = s.req("DELETE", &format!("/users/{user}/logs"), None);
    assert_eq!(erased.status, 200);
    assert!(erased.json["message"].as_str().unwrap().contains('3'));
    assert_eq!(q("error_logs", "user_id"), 0);
    assert_eq!(total(), before - 3, "the kept total follows the erasure");
    assert_eq!(
        s.get(&format!("/logs?associatedUserId={user}")).json["pagination"]["totalItems"],
        0,
        "and so does the user's"
    );
}

#[test]
fn deleting_a_workflow_removes_its_executions() {
    let s = Server::start();
    let rx = Receiver::start();
    let (user, wf, _) = installed(&s, http_integration("i", &rx.url), "wfdel", "k");
    s.post(
        "/run/workflow",
        json!({ "userId": user, "workflowId": wf, "data": run_input() }),
    );
    s.wait_for_runs(&wf, 1);
    s.req("DELETE", &format!("/workflows/{wf}"), None);
    let db = open_db(&s.db_path());
    assert_eq!(
        count(
            &db,
            &format!("SELECT count(*) FROM executions WHERE workflow_id = '{wf}'")
        ),
        0
    );
}

#[test]
fn queued_runs_survive_a_restart_and_each_finishes_once() {
    let mut s = Server::start_configured(|c| c.workers = 1);
    let rx = Receiver::start();
    rx.delay(100);
    let (user, wf, _) = installed(&s, http_integration("i", &rx.url), "patient", "k");
    let ids: Vec<String> = (0..12)
        .map(|_| {
            let r = s.post(
                "/run/workflow",
                json!({ "userId": user, "workflowId": wf, "data": run_input() }),
            );
            r.json["executionId"].as_str().unwrap().to_string()
        })
        .collect();
    s.restart(); // graceful: the run in hand finishes, the rest stay queued
    let runs = s.wait_for_runs(&wf, 12);
    assert_eq!(runs.len(), 12);
    assert!(
        runs.iter().all(|r| r["status"] == "succeeded" && r["attempts"] == 1),
        "{runs:?}"
    );
    let mut seen: Vec<&str> = runs.iter().map(|r| r["executionId"].as_str().unwrap()).collect();
    seen.sort();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(seen, want);
    assert_eq!(rx.requests().len(), 12, "each run sent its request exactly once");
}

#[test]
fn integrations_load_from_a_file_at_start_up_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("integrations.json");
    std::fs::write(&file, json!([http_integration("Demo CRM", "http://127.0.0.1:9"), { "env": "production", "name": "Prod only", "app": "p", "workflows": [{ "name": "w", "blocks": [{ "type": "fail" }] }] }]).to_string()).unwrap();
    let mut s = Server::start_configured(|c| c.integrations_file = Some(file.clone()));
    let list = s.get("/integrations").json["data"].clone();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], "Demo CRM");
    let prod = s.new_key(ingot::store::Env::Production);
    assert_eq!(
        s.req_as(&prod, "GET", "/integrations", None).json["data"][0]["name"],
        "Prod only"
    );
    s.restart();
    let again = s.get("/integrations").json["data"].clone();
    assert_eq!(again.as_array().unwrap().len(), 1);
    assert_eq!(again[0]["integrationId"], list[0]["integrationId"]);
    assert_eq!(again[0]["version"], 1, "an unchanged file does not bump the version");
}

#[test]
fn one_environments_slow_runs_leave_a_worker_for_the_others() {
    let s = Server::start_configured(|c| {
        c.workers = 4;
        c.outbound_allow = ingot::outbound::parse_allow("127.0.0.1").unwrap();
    });
    let slow = Receiver::start();
    slow.delay(3000);
    let fast = Receiver::start();
    let prod = s.new_key(ingot::store::Env::Production);
    // Six development runs that each hang for three seconds on a slow server.
    let (dev_user, dev_wf, _) = installed(
        &s,
        http_integration("slow", &format!("{}/slow", slow.url)),
        "slowpoke",
        "k",
    );
    for _ in 0..6 {
        assert_eq!(
            s.post(
                "/run/workflow",
                json!({ "userId": dev_user, "workflowId": dev_wf, "data": run_input() })
            )
            .status,
            200
        );
    }
    // Then one production run against a fast one: it finishes.
    let credential = json!({ "type": "httpHeaderAuth", "data": { "fieldName": "X-Api-Key", "value": "k" } });
    let integration = http_integration("fast", &format!("{}/fast", fast.url));
    let (prod_user, prod_wf) = s.installed_as(&prod, integration, "speedy", Some(credential));
    s.run_and_wait_as(&prod, &prod_user, &prod_wf, run_input());
    // It ran while every development run was still waiting on the slow server.
    let dev = s.get(&format!("/workflows/{dev_wf}/logs?limit=30")).json["data"].clone();
    let finished = dev.as_array().unwrap().iter().filter(|e| e["finished"] == true).count();
    assert_eq!(finished, 0, "the production run waited for development runs: {dev}");
    assert_eq!(fast.requests().len(), 1);
}

#[test]
fn a_blocks_result_keeps_at_most_64_kib_of_the_reply() {
    let s = Server::start();
    let rx = Receiver::start();
    rx.answer_body(&"a".repeat(100 * 1024));
    let iid = s.create_integration(json!({ "name": "big", "app": "a", "workflows": [
        { "name": "w", "blocks": [{ "type": "http", "url": format!("{}/big", rx.url) }] }] }));
    let user = s.create_user("big-reply");
    let wf = s.install(&user, &iid).remove(0);
    let ex = s.run_and_wait_as(&s.key, &user, &wf, json!({}));
    assert_eq!(ex["status"], "succeeded", "{ex}");
    let kept = ex["results"][0]["output"]["body"].as_str().unwrap();
    assert_eq!(kept.len(), 64 * 1024);
}

#[test]
fn environments_take_turns_for_the_workers() {
    let s = Server::start_configured(|c| {
        c.workers = 1;
        c.outbound_allow = ingot::outbound::parse_allow("127.0.0.1").unwrap();
    });
    let (rx, slow) = (Receiver::start(), Receiver::start());
    slow.delay(1000);
    let prod = s.new_key(ingot::store::Env::Production);
    let call_to = |name: &str, url: String| {
        json!({ "name": name, "app": "a", "workflows": [
        { "name": "w", "blocks": [{ "type": "http", "url": url }] }] })
    };
    let (dev_user, dev_wf) = s.installed_as(&s.key, call_to("dev", format!("{}/dev", rx.url)), "turn-dev", None);
    let (_, hold_wf) = s.installed_as(&s.key, call_to("hold", format!("{}/hold", slow.url)), "turn-hold", None);
    let (prod_user, prod_wf) = s.installed_as(&prod, call_to("prod", format!("{}/prod", rx.url)), "turn-prod", None);
    let run = |key: &str, user: &str, wf: &str| {
        let r = s.req_as(
            key,
            "POST",
            "/run/workflow",
            Some(&json!({ "userId": user, "workflowId": wf })),
        );
        assert_eq!(r.status, 200, "{}", r.json);
    };
    // The one worker is held for a second by a development run while the rest queue up.
    run(&s.key, "turn-hold", &hold_wf);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while slow.requests().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the first run never started");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    run(&s.key, &dev_user, &dev_wf);
    run(&s.key, &dev_user, &dev_wf);
    run(&prod, &prod_user, &prod_wf);
    run(&prod, &prod_user, &prod_wf);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while rx.requests().len() < 4 {
        assert!(std::time::Instant::now() < deadline, "runs did not all go out");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // Development just had its turn, so production goes first, then they alternate.
    let order: Vec<String> = rx.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(order, ["/prod", "/dev", "/prod", "/dev"]);
}

#[test]
fn a_block_may_only_use_its_users_own_credential_even_when_the_user_has_others() {
    let s = Server::start();
    let rx = Receiver::start();
    let (mine, theirs) = (s.create_user("owner-a"), s.create_user("owner-b"));
    let add = |u: &str| {
        let r = s.post(
            &format!("/users/{u}/credentials"),
            json!({ "type": "apiKey", "data": { "apiKey": "k" } }),
        );
        r.json["credentialId"].as_str().unwrap().to_string()
    };
    add(&mine);
    let foreign = add(&theirs);
    let iid = s.create_integration(json!({ "name": "foreign", "app": "a", "workflows": [{ "name": "w",
        "blocks": [{ "type": "http", "url": format!("{}/x", rx.url), "credentialId": foreign }] }] }));
    let wf = s.install(&mine, &iid).remove(0);
    let r = s.post("/run/workflow", json!({ "userId": mine, "workflowId": wf }));
    assert_eq!(r.status, 422, "{}", r.json);
    assert!(r.message().contains("not this user's"), "{}", r.message());
    assert!(rx.requests().is_empty());
}

#[test]
fn a_run_queued_before_its_workflow_was_deactivated_or_its_user_disabled_is_cancelled() {
    let s = Server::start_configured(|c| c.workers = 1);
    let (rx, slow) = (Receiver::start(), Receiver::start());
    slow.delay(1000);
    let call_to = |name: &str, url: String| {
        json!({ "name": name, "app": "a", "workflows": [
        { "name": "w", "blocks": [{ "type": "http", "url": url }] }] })
    };
    let (_, hold) = s.installed_as(&s.key, call_to("hold", format!("{}/hold", slow.url)), "holder", None);
    let (u1, w1) = s.installed_as(
        &s.key,
        call_to("one", format!("{}/one", rx.url)),
        "deactivated-later",
        None,
    );
    let (u2, w2) = s.installed_as(
        &s.key,
        call_to("two", format!("{}/two", rx.url)),
        "disabled-later",
        None,
    );
    // The one worker is busy while the two runs are queued and then made unrunnable.
    assert_eq!(
        s.post("/run/workflow", json!({ "userId": "holder", "workflowId": hold }))
            .status,
        200
    );
    assert_eq!(
        s.post("/run/workflow", json!({ "userId": u1, "workflowId": w1 }))
            .status,
        200
    );
    assert_eq!(
        s.post("/run/workflow", json!({ "userId": u2, "workflowId": w2 }))
            .status,
        200
    );
    let off = s.req(
        "PUT",
        "/workflows/deactivate",
        Some(&json!({ "userId": u1, "workflowId": w1 })),
    );
    assert_eq!(off.status, 200, "{}", off.json);
    let dis = s.req("PUT", &format!("/users/{u2}"), Some(&json!({ "disabled": true })));
    assert_eq!(dis.status, 200, "{}", dis.json);
    for wf in [&w1, &w2] {
        let ex = s.wait_for_runs(wf, 1).remove(0);
        assert_eq!(ex["status"], "cancelled", "{ex}");
    }
    assert!(rx.requests().is_empty(), "a cancelled run sent its request");
}

#[test]
fn a_workflow_whose_bound_credential_was_deleted_uses_the_users_newest_of_its_type() {
    let s = Server::start();
    let rx = Receiver::start();
    let user = s.create_user("rebound");
    let add = |value: &str| {
        let r = s.post(
            &format!("/users/{user}/credentials"),
            json!({ "type": "httpHeaderAuth", "data": { "fieldName": "X-Api-Key", "value": value } }),
        );
        r.json["credentialId"].as_str().unwrap().to_string()
    };
    let first = add("first");
    let iid = s.create_integration(http_integration("rebind", &rx.url));
    let r = s.post(
        &format!("/users/{user}/integrations/{iid}/install"),
        json!({ "credentialId": first }),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    let wf = r.json["data"][0]["workflowId"].as_str().unwrap().to_string();
    assert_eq!(
        s.req("DELETE", &format!("/users/{user}/credentials/{first}"), None)
            .status,
        200
    );
    add("second");
    let ex = s.run_and_wait_as(&s.key, &user, &wf, run_input());
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(rx.requests()[0].header("X-Api-Key"), Some("second"));
}
