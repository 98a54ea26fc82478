//! The pages, in a real browser (Debian's chromium driven by playwright-core): the embedded
//! modal opened by `/embedded.js` from a page on another origin.

use crate::harness::{open_db, Server};
use crate::peers::node_modules;
use crate::receiver::Receiver;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;

/// Where page screenshots are kept (a test artifact).
fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn browser_script(name: &str, env: &[(&str, String)]) -> Value {
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "chromium is not installed: run `bash tests/run.sh`"
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser")
        .join(name);
    let mut cmd = Command::new("node");
    cmd.arg(script)
        .env("NODE_PEERS", node_modules())
        .env("SCREENSHOTS", screenshots());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("a JSON summary line")
}

fn installed_of(s: &Server, user: &str) -> usize {
    s.get(&format!("/workflows?userId={user}")).json["data"]
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn the_embedded_modal_installs_cancels_explains_a_dead_token_and_stays_hidden_when_asked() {
    let s = Server::start();
    let rx = Receiver::start();
    let iid = s.create_integration(json!({
        "name": "Helpdesk", "app": "helpdesk", "credentialType": "apiKey",
        "icon": "data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIHZpZXdCb3g9IjAgMCAxIDEiPjxyZWN0IHdpZHRoPSIxIiBoZWlnaHQ9IjEiIGZpbGw9IiMyZjYyZjAiLz48L3N2Zz4=",
        "workflows": [
            { "name": "Open ticket", "blocks": [{ "name": "Create", "type": "http", "method": "POST", "url": format!("{}/tickets", rx.url) }] },
            { "name": "Close ticket", "blocks": [{ "name": "Close", "type": "http", "method": "POST", "url": format!("{}/close", rx.url) }] }
        ]
    }));
    let fresh = s.create_user("modal-new");
    let cancels = s.create_user("modal-cancel");
    let has = s.create_user("modal-has");
    s.post(
        &format!("/users/{has}/credentials"),
        json!({ "type": "apiKey", "data": { "apiKey": "kept" } }),
    );
    let dead = s.create_user("modal-dead");
    let dead_token = s.token(&dead);
    s.req("DELETE", &format!("/users/{dead}"), None);
    let linked = s.create_user("modal-linked");
    let link = s.get(&format!("/users/{linked}/integrations/{iid}/install-url")).json["url"]
        .as_str()
        .unwrap()
        .to_string();
    let link_url = format!("{}/embedded-install?{}", s.base, link.split_once('?').unwrap().1);
    // A user on version 1 of an integration that has a version 2.
    let updating = s.create_user("modal-update");
    s.post(
        &format!("/users/{updating}/credentials"),
        json!({ "type": "apiKey", "data": { "apiKey": "old" } }),
    );
    s.install(&updating, &iid);
    let mut v2 = s.get(&format!("/integrations/{iid}")).json["data"].clone();
    v2["workflows"][0]["blocks"][0]["url"] = json!(format!("{}/tickets/v2", rx.url));
    let def = json!({ "name": v2["name"], "app": v2["app"], "icon": v2["icon"], "credentialType": "apiKey",
        "workflows": v2["workflows"].as_array().unwrap().iter().map(|w| json!({ "workflowId": w["workflowId"], "name": w["name"],
            "blocks": w["blocks"].as_array().unwrap().iter().map(|b| { let mut b = b.clone(); b.as_object_mut().unwrap().remove("icon"); b }).collect::<Vec<_>>() })).collect::<Vec<_>>() });
    assert_eq!(s.post("/integrations", def).json["version"], 2);

    let seen = browser_script(
        "modal.mjs",
        &[
            ("INGOT_URL", s.base.clone()),
            ("INTEGRATION", iid.clone()),
            ("TOKEN_NEW", s.token(&fresh)),
            ("TOKEN_CANCEL", s.token(&cancels)),
            ("TOKEN_HAS", s.token(&has)),
            ("TOKEN_DEAD", dead_token),
            ("LINK_URL", link_url),
            ("TOKEN_UPDATE", s.token(&updating)),
        ],
    );
    assert_eq!(seen["install"], json!([{ "success": true }]), "{seen}");
    assert_eq!(seen["cancel"], json!([{ "success": false }]));
    assert_eq!(seen["dead"], json!([{ "success": false }]));
    assert_eq!(seen["hidden"], json!([{ "success": true }]));
    assert_eq!(
        seen["hiddenShown"], false,
        "a hidden modal with nothing to ask never showed"
    );
    assert_eq!(seen["shownWhenNeeded"], true);
    assert!(seen["spent"].as_str().unwrap().contains("used"), "{seen}");
    assert_eq!(installed_of(&s, &linked), 2, "installed through the hosted page");
    assert_eq!(seen["update"], json!([{ "success": true }]));
    let up = s.get(&format!("/workflows?userId={updating}")).json["data"].clone();
    assert!(
        up.as_array().unwrap().iter().all(|w| w["installedVersion"] == 2),
        "{up}"
    );

    // What the browser did is in the database: the typed key, sealed, and both workflows.
    let installed = |u: &str| {
        s.get(&format!("/workflows?userId={u}")).json["data"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(installed(&fresh), 2);
    assert_eq!(installed(&cancels), 0);
    assert_eq!(installed(&has), 2);
    let conn = open_db(&s.db_path());
    let c = ingot::store::credentials::list(&conn, &fresh).unwrap();
    assert_eq!(c.len(), 1);
    let data = ingot::store::credentials::open_data(&conn, &s.app().store.secrets, &c[0].id, &fresh).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&data).unwrap(),
        json!({ "apiKey": "desk-key-from-the-browser" })
    );
    assert!(screenshots().join("install-form.png").exists());
}

#[test]
fn the_install_pages_are_framed_only_where_allowed_and_load_nothing_inline() {
    let s = Server::start();
    let user = s.create_user("framing");
    let dev = s.token(&user);
    let head = |path: &str| ureq::get(&format!("{}{path}", s.base)).call().unwrap();
    let csp = |path: &str| head(path).header("content-security-policy").unwrap().to_string();
    assert!(
        csp(&format!("/forge-install?integrationId=x&token={dev}")).ends_with("frame-ancestors *"),
        "development: any origin"
    );
    assert!(
        csp("/forge-install?integrationId=x").ends_with("frame-ancestors 'self'"),
        "no token: only ingot's own console"
    );
    assert!(csp("/embedded-install?link=il_x").ends_with("frame-ancestors 'none'"));
    let page = head("/forge-install");
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    let policy = page.header("content-security-policy").unwrap().to_string();
    assert!(policy.starts_with("default-src 'none'; script-src 'self';"), "{policy}");
    let prod_key = s.new_key(ingot::store::Env::Production);
    let prod_user = s
        .req_as(&prod_key, "POST", "/users", Some(&json!({ "username": "p" })))
        .json["userId"]
        .as_str()
        .unwrap()
        .to_string();
    let prod = s
        .req_as(&prod_key, "GET", &format!("/users/{prod_user}/token"), None)
        .json["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        csp(&format!("/forge-install?token={prod}")).ends_with("frame-ancestors 'self'"),
        "production: no other origin until configured"
    );
    let configured = Server::start_configured(|c| c.frame_ancestors = Some(vec!["https://app.example.com".into()]));
    let r = ureq::get(&format!("{}/forge-install?token={dev}", configured.base))
        .call()
        .unwrap();
    assert!(r
        .header("content-security-policy")
        .unwrap()
        .ends_with("frame-ancestors 'self' https://app.example.com"));
    let console = head("/console");
    let policy = console.header("content-security-policy").unwrap().to_string();
    assert!(
        policy.ends_with("frame-ancestors 'none'") && policy.contains("frame-src 'self'"),
        "{policy}"
    );
    assert!(
        console.header("access-control-allow-origin").is_none(),
        "no CORS on the console"
    );
    assert_eq!(
        head("/healthz").header("access-control-allow-origin"),
        Some("*"),
        "CORS on the API"
    );
    let js = head("/embedded.js");
    assert_eq!(js.content_type(), "text/javascript");
    assert!(js.into_string().unwrap().contains("window.Alloy = Alloy();"));
}

#[test]
fn the_official_frontend_sdk_unchanged_installs_through_a_local_tls_front() {
    let s = Server::start();
    let iid = s.create_integration(json!({
        "name": "Helpdesk", "app": "helpdesk", "credentialType": "apiKey",
        "workflows": [{ "name": "Open ticket", "blocks": [{ "name": "Fail", "type": "fail" }] }]
    }));
    let user = s.create_user("official-sdk");
    let seen = browser_script(
        "official_sdk.mjs",
        &[
            ("INGOT_URL", s.base.clone()),
            ("INTEGRATION", iid),
            ("TOKEN_NEW", s.token(&user)),
        ],
    );
    assert_eq!(seen["install"], json!([{ "success": true }]), "{seen}");
    assert_eq!(seen["workflows"], json!(["Open ticket"]));
    assert_eq!(
        s.get(&format!("/users/{user}/credentials")).json["data"][0]["type"],
        "apiKey"
    );
}

#[test]
fn the_console_signs_in_manages_users_settings_logs_and_keys_and_refuses_a_forged_post() {
    let s = Server::start_configured(|c| c.retry_schedule = Vec::new());
    let peer = crate::peers::WebhookPeer::start();
    let moto = crate::peers::Moto::start();
    let iid = s.create_integration(json!({
        "name": "Demo", "app": "demo",
        "workflows": [{ "name": "boom", "blocks": [{ "type": "fail", "name": "Refuse", "message": "Upstream said no" }] }]
    }));
    let runner = s.create_user("runner");
    let wf = s.install(&runner, &iid).remove(0);
    let seen = browser_script(
        "console.mjs",
        &[
            ("INGOT_URL", s.base.clone()),
            ("INGOT_KEY", s.key.clone()),
            ("INTEGRATION", iid),
            ("RUNNER", runner),
            ("WORKFLOW", wf),
            ("PEER_URL", peer.base.clone()),
            ("EB_JSON", moto.settings(moto.secret()).to_string()),
        ],
    );
    assert_eq!(
        seen["cookie"],
        json!([{ "name": "ingot_console", "httpOnly": true, "sameSite": "Strict", "path": "/console" }])
    );
    assert_eq!(seen["keyInStorage"], false, "the API key is not kept in the browser");
    assert_eq!(seen["created"], 200);
    assert_eq!(seen["secretShownOnce"], true);
    assert_eq!(seen["retried"], true);
    assert_eq!(seen["peerAccepted"].as_array().unwrap().len(), 1);
    assert_eq!(seen["ebSecretOnPage"], false, "the secret access key is never shown");
    assert_eq!(
        (seen["ebOff"].clone(), seen["ebOn"].clone()),
        (json!(false), json!(true))
    );
    assert_eq!(seen["ebTest"], 1);
    assert_eq!(seen["ebState"], "OK");
    assert_eq!(
        seen["staleDraw"],
        json!({ "deliveries": 0, "overview": 1 }),
        "a re-render that finished late drew over the page the operator went to"
    );
    assert!(seen["chartErrors"].as_i64().unwrap() >= 1, "{seen}");
    assert!(
        seen["defError"]
            .as_str()
            .unwrap()
            .contains("workflows[0].blocks[0].type"),
        "{seen}"
    );
    assert_eq!(
        (seen["newKeyWorks"].clone(), seen["revokedKey"].clone()),
        (json!(200), json!(401))
    );
    assert_eq!(seen["forged"], 404, "the forged POST made no user");
    assert_eq!(seen["afterSignOut"], false);
    let events = moto.drain_queue();
    assert!(events.iter().any(|e| e["detail"]["blockType"] == "test"), "{events:?}");
}

/// The console's session rules, through HTTP: the cookie's flags, CSRF on every change, idle
/// expiry, a revoked key ending its sessions, and the key's environment only.
#[test]
fn console_sessions_need_their_csrf_token_expire_when_idle_and_end_with_their_key() {
    let s = Server::start();
    let agent = ureq::AgentBuilder::new().build();
    let sign_in = |key: &str| {
        let r = agent
            .post(&format!("{}/console/session", s.base))
            .send_json(json!({ "apiKey": key }))
            .unwrap();
        let cookie = r.header("set-cookie").unwrap().to_string();
        let body: Value = r.into_json().unwrap();
        (cookie, body["csrf"].as_str().unwrap().to_string())
    };
    let key = s.new_key(ingot::store::Env::Development);
    let (cookie, csrf) = sign_in(&key);
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/console"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain http here; Secure when INGOT_PUBLIC_URL is https"
    );
    let value = cookie.split(';').next().unwrap().to_string();
    let call = |method: &str, path: &str, csrf: Option<&str>| {
        let mut rq = agent
            .request(method, &format!("{}{path}", s.base))
            .set("Cookie", &value);
        if let Some(t) = csrf {
            rq = rq.set("X-CSRF-Token", t);
        }
        match rq.send_json(json!({ "username": format!("c-{method}-{}", csrf.is_some()) })) {
            Ok(r) | Err(ureq::Error::Status(_, r)) => {
                (r.status(), r.header("access-control-allow-origin").map(str::to_string))
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(call("POST", "/console/api/users", None).0, 403, "no CSRF token");
    assert_eq!(
        call("POST", "/console/api/users", Some("wrong")).0,
        403,
        "a wrong CSRF token"
    );
    let (status, cors) = call("POST", "/console/api/users", Some(&csrf));
    assert_eq!(
        (status, cors),
        (200, None),
        "a change with its token, and no CORS header"
    );
    assert_eq!(s.get("/users/c-POST-true").status, 200);
    assert_eq!(
        s.get("/users/c-POST-false").status,
        404,
        "the refused changes made nothing"
    );
    let r = agent
        .post(&format!("{}/console/api/users", s.base))
        .set("Cookie", &value)
        .set("X-CSRF-Token", &csrf)
        .set("Origin", "http://evil.example")
        .send_json(json!({ "username": "from-elsewhere" }));
    assert!(matches!(r, Err(ureq::Error::Status(403, _))), "another origin");
    // The session is the key's environment: production data is not there.
    let prod = s.new_key(ingot::store::Env::Production);
    s.req_as(&prod, "POST", "/users", Some(&json!({ "username": "prod-only" })));
    assert_eq!(call("GET", "/console/api/users/prod-only", None).0, 404);
    // Idle for longer than INGOT_CONSOLE_IDLE: signed out.
    s.app().clock.advance(31 * 60 * 1000);
    assert_eq!(call("GET", "/console/api/users", None).0, 401);
    // A revoked key ends its sessions at once.
    let (cookie, _) = sign_in(&key);
    let value = cookie.split(';').next().unwrap().to_string();
    let get = |v: &str| match agent
        .get(&format!("{}/console/api/users", s.base))
        .set("Cookie", v)
        .call()
    {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r.status(),
        Err(e) => panic!("{e}"),
    };
    assert_eq!(get(&value), 200);
    let id = key.split('_').nth(2).unwrap();
    ingot::admin::revoke_key(&s.config, id).unwrap();
    assert_eq!(get(&value), 401);
}

#[test]
fn the_modal_connects_an_oauth_account_in_a_window_of_its_own_then_installs() {
    let s = Server::start_public(|_| {});
    let provider = crate::peers::OAuthPeer::start(&format!("{}/oauth/callback", s.config.public_url));
    let iid = s.create_integration(json!({
        "name": "Contacts", "app": "contacts", "credentialType": "oauth2",
        "oauth": { "authorizationUrl": format!("{}/auth", provider.issuer), "tokenUrl": format!("{}/token", provider.issuer),
                   "scopes": ["openid", "offline_access"], "clientId": crate::peers::OAuthPeer::CLIENT_ID,
                   "clientSecret": crate::peers::OAuthPeer::CLIENT_SECRET },
        "workflows": [{ "name": "Who", "blocks": [{ "name": "Me", "type": "http", "url": format!("{}/me", provider.issuer) }] }]
    }));
    let user = s.create_user("oauth-modal");
    let seen = browser_script(
        "oauth_modal.mjs",
        &[
            ("INGOT_URL", s.base.clone()),
            ("INTEGRATION", iid),
            ("TOKEN", s.token(&user)),
        ],
    );
    assert_eq!(seen["connectedPage"], "Connected");
    assert_eq!(seen["install"], json!([{ "success": true }]));
    let wf = s.get(&format!("/workflows?userId={user}")).json["data"][0]["workflowId"]
        .as_str()
        .unwrap()
        .to_string();
    let run = s.run_and_wait_as(&s.key, &user, &wf, json!({}));
    assert_eq!(
        run["results"][0]["output"]["body"]["sub"], "user-1",
        "the run used the connected account"
    );
}
