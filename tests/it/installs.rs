//! Installing without the modal: install links and their rules, and the two-step headless
//! installation with the credential it asks for.

use crate::harness::{count, db_contains, open_db, Server};
use crate::receiver::Receiver;
use serde_json::{json, Value};

fn integration(url: &str) -> Value {
    json!({
        "name": "Helpdesk",
        "app": "helpdesk",
        "credentialType": "deskKey",
        "credentialTypes": [{ "name": "deskKey", "displayName": "Desk key", "properties": [
            { "name": "apiKey", "displayName": "API key", "required": true, "secret": true },
            { "name": "subdomain", "displayName": "Subdomain", "required": false }
        ] }],
        "workflows": [
            { "name": "Open ticket", "blocks": [{ "name": "Create", "type": "http", "method": "POST", "url": format!("{url}/tickets") }] },
            { "name": "Close ticket", "blocks": [{ "name": "Close", "type": "http", "method": "POST", "url": format!("{url}/close") }] }
        ]
    })
}

fn redeem(s: &Server, link: &str) -> crate::harness::Reply {
    s.call(
        "POST",
        "/install-links/redeem",
        &[],
        Some(&json!({ "link": link }).to_string()),
    )
}

fn link_of(url: &str) -> String {
    url.split_once("link=").unwrap().1.to_string()
}

#[test]
fn an_install_link_works_for_its_user_until_it_installs_once() {
    let s = Server::start();
    let rx = Receiver::start();
    let iid = s.create_integration(integration(&rx.url));
    let user = s.create_user("linked");
    let before = ingot::ids::now_ms();
    let r = s.get(&format!("/2024-03/users/{user}/integrations/{iid}/install-url"));
    assert_eq!(r.status, 200, "{}", r.json);
    let url = r.json["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/embedded-install?link=il_", s.config.public_url)),
        "{url}"
    );
    let expires = crate::harness::epoch_ms(r.json["expiresAt"].as_str().unwrap());
    let week = 7 * 24 * 3600 * 1000;
    assert!(
        (before + week - 1000..=ingot::ids::now_ms() + week).contains(&expires),
        "seven days by default"
    );
    let link = link_of(url);
    assert!(
        !db_contains(&s.db_path(), link.as_bytes()),
        "only the link's hash is stored"
    );

    // Redeemed: a user token for the link's user, no longer-lived than the 30-minute cap.
    let got = redeem(&s, &link);
    assert_eq!(got.status, 200, "{}", got.json);
    assert_eq!(got.json["userId"], user.as_str());
    assert_eq!(got.json["integrationId"], iid.as_str());
    let token = got.json["token"].as_str().unwrap().to_string();
    assert_eq!(s.as_user(&token, "GET", "/session", None).json["userId"], user.as_str());
    // Redeeming again before the install is fine (the page may be reloaded).
    assert_eq!(redeem(&s, &link).status, 200);

    // The install spends it.
    s.post(
        &format!("/users/{user}/credentials"),
        json!({ "type": "deskKey", "data": { "apiKey": "k" } }),
    );
    let path = format!("/users/{user}/integrations/{iid}/install");
    assert_eq!(s.as_user(&token, "POST", &path, Some(&json!({}))).status, 200);
    let spent = redeem(&s, &link);
    assert_eq!(spent.status, 410);
    assert!(spent.message().contains("used"), "{}", spent.message());
    let again = s.as_user(&token, "POST", &path, Some(&json!({})));
    assert_eq!(again.status, 410, "the link's token cannot install twice");
    // A token minted by the API key is not bound to any link.
    assert_eq!(s.as_user(&s.token(&user), "POST", &path, Some(&json!({}))).status, 200);

    assert_eq!(redeem(&s, "il_nothing").status, 404);
    assert_eq!(
        s.get(&format!("/users/nobody/integrations/{iid}/install-url")).status,
        404
    );
    assert_eq!(
        s.get(&format!("/users/{user}/integrations/nothing/install-url")).status,
        404
    );
}

#[test]
fn an_install_link_expires_after_its_ttl() {
    let s = Server::start_configured(|c| c.install_link_ttl = std::time::Duration::from_secs(120));
    let iid = s.create_integration(integration("http://127.0.0.1:9"));
    let user = s.create_user("late");
    let r = s.get(&format!("/users/{user}/integrations/{iid}/install-url"));
    let link = link_of(r.json["url"].as_str().unwrap());
    let got = redeem(&s, &link);
    assert_eq!(got.status, 200);
    let token_exp = crate::harness::epoch_ms(got.json["expiresAt"].as_str().unwrap());
    assert!(token_exp <= crate::harness::epoch_ms(got.json["linkExpiresAt"].as_str().unwrap()));
    s.app().clock.advance(121 * 1000);
    let late = redeem(&s, &link);
    assert_eq!(late.status, 410);
    assert!(late.message().contains("expired"), "{}", late.message());
}

#[test]
fn a_headless_installation_asks_for_the_missing_credential_and_installs_with_it() {
    let s = Server::start();
    let rx = Receiver::start();
    let created = s.post("/integrations", integration(&rx.url));
    let iid = created.json["integrationId"].as_str().unwrap().to_string();
    let open = created.json["workflows"][0]["workflowId"].as_str().unwrap().to_string();
    let user = s.create_user("headless");

    let start = s.post(
        "/2024-03/headless/startInstallation",
        json!({ "userId": user, "integrationId": iid, "workflowIds": [open] }),
    );
    assert_eq!(start.status, 200, "{}", start.json);
    let installation = start.json["installationId"].as_str().unwrap().to_string();
    let asks = start.json["data"].as_array().unwrap();
    assert_eq!(asks.len(), 1, "one block of the one selected workflow: {asks:?}");
    assert_eq!(asks[0]["workflowId"], open.as_str());
    assert_eq!(asks[0]["app"], "helpdesk");
    let block = asks[0]["blockId"].as_str().unwrap().to_string();
    let fields = asks[0]["fields"].as_array().unwrap();
    assert_eq!(
        fields[0],
        json!({ "name": "apiKey", "displayName": "API key", "description": "", "type": "password", "required": true })
    );
    assert_eq!(fields[1]["required"], false);

    // Refused answers change nothing.
    let complete = |fields: Value| {
        s.post(
            "/headless/completeInstallation",
            json!({ "installationId": installation, "data": [{ "workflowId": open, "blockId": block, "fields": fields }] }),
        )
    };
    let missing = complete(json!([{ "name": "subdomain", "value": "acme" }]));
    assert_eq!(missing.status, 422);
    assert!(
        missing.message().contains("data.apiKey is required"),
        "{}",
        missing.message()
    );
    let none = s.post(
        "/headless/completeInstallation",
        json!({ "installationId": installation, "data": [] }),
    );
    assert_eq!(none.status, 422);
    assert!(none.message().contains(&block), "{}", none.message());
    let conn = open_db(&s.db_path());
    assert_eq!(count(&conn, "SELECT count(*) FROM credentials"), 0);
    assert_eq!(count(&conn, "SELECT count(*) FROM workflows"), 0);

    let done =
        complete(json!([{ "name": "apiKey", "value": "desk-secret-9" }, { "name": "subdomain", "value": "acme" }]));
    assert_eq!(done.status, 200, "{}", done.json);
    assert_eq!(done.json["message"], "success");
    let wfs = done.json["workflowIds"].as_array().unwrap();
    assert_eq!(wfs.len(), 1, "only the selected workflow");
    let listed = s.get(&format!("/users/{user}/credentials")).json["data"].clone();
    assert_eq!(listed[0]["type"], "deskKey");
    assert!(
        !db_contains(&s.db_path(), b"desk-secret-9"),
        "sealed like every credential"
    );
    // The new credential is the one the workflow sends.
    let wf = wfs[0].as_str().unwrap();
    s.run_and_wait_as(&s.key, &user, wf, json!({}));
    assert_eq!(rx.requests()[0].header("authorization"), Some("Bearer desk-secret-9"));
    // Once only.
    assert_eq!(complete(json!([{ "name": "apiKey", "value": "x" }])).status, 410);

    // A user who has a credential of the type is asked for nothing.
    let again = s.post(
        "/headless/startInstallation",
        json!({ "userId": user, "integrationId": iid }),
    );
    assert_eq!(again.json["data"], json!([]));
    let id = again.json["installationId"].as_str().unwrap();
    let both = s.post(
        "/headless/completeInstallation",
        json!({ "installationId": id, "data": [] }),
    );
    assert_eq!(both.status, 200, "{}", both.json);
    assert_eq!(both.json["workflowIds"].as_array().unwrap().len(), 2);
}

#[test]
fn headless_installations_refuse_strangers_and_bad_selections() {
    let s = Server::start();
    let iid = s.create_integration(integration("http://127.0.0.1:9"));
    let (a, b) = (s.create_user("inst-a"), s.create_user("inst-b"));
    let bad = s.post(
        "/headless/startInstallation",
        json!({ "userId": a, "integrationId": iid, "workflowIds": ["nope"] }),
    );
    assert_eq!(bad.status, 422);
    assert!(bad.message().contains("nope"), "{}", bad.message());
    let theirs = s.post(
        &format!("/users/{b}/credentials"),
        json!({ "type": "apiKey", "data": { "apiKey": "k" } }),
    );
    let cid = theirs.json["credentialId"].as_str().unwrap();
    let foreign = s.post(
        "/headless/startInstallation",
        json!({ "userId": a, "integrationId": iid, "credentialIds": [cid] }),
    );
    assert_eq!(foreign.status, 422);
    let started = s.post(
        "/headless/startInstallation",
        json!({ "userId": a, "integrationId": iid }),
    );
    let id = started.json["installationId"].as_str().unwrap();
    // B's token cannot complete A's installation; A's can start its own.
    let tb = s.token(&b);
    let r = s.as_user(
        &tb,
        "POST",
        "/headless/completeInstallation",
        Some(&json!({ "installationId": id, "data": [] })),
    );
    assert_eq!(r.status, 403);
    let ta = s.token(&a);
    let mine = s.as_user(
        &ta,
        "POST",
        "/headless/startInstallation",
        Some(&json!({ "integrationId": iid })),
    );
    assert_eq!(mine.status, 200, "{}", mine.json);
    // Not across environments.
    let prod = s.new_key(ingot::store::Env::Production);
    let r = s.req_as(
        &prod,
        "POST",
        "/headless/completeInstallation",
        Some(&json!({ "installationId": id, "data": [] })),
    );
    assert_eq!(r.status, 404);
}

#[test]
fn a_headless_installation_completed_with_a_links_token_spends_the_link() {
    let s = Server::start();
    let iid = s.create_integration(integration("http://127.0.0.1:9"));
    let user = s.create_user("link-headless");
    s.post(
        &format!("/users/{user}/credentials"),
        json!({ "type": "deskKey", "data": { "apiKey": "k" } }),
    );
    let r = s.get(&format!("/users/{user}/integrations/{iid}/install-url"));
    let link = link_of(r.json["url"].as_str().unwrap());
    let token = redeem(&s, &link).json["token"].as_str().unwrap().to_string();
    let started = s.as_user(
        &token,
        "POST",
        "/headless/startInstallation",
        Some(&json!({ "integrationId": iid })),
    );
    let body = json!({ "installationId": started.json["installationId"], "data": [] });
    assert_eq!(
        s.as_user(&token, "POST", "/headless/completeInstallation", Some(&body))
            .status,
        200
    );
    assert_eq!(redeem(&s, &link).status, 410, "spent by the completion");
    // A second installation with the same link's token is refused.
    let again = s.as_user(
        &token,
        "POST",
        "/headless/startInstallation",
        Some(&json!({ "integrationId": iid })),
    );
    let body = json!({ "installationId": again.json["installationId"], "data": [] });
    assert_eq!(
        s.as_user(&token, "POST", "/headless/completeInstallation", Some(&body))
            .status,
        410
    );
}
