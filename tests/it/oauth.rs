//! OAuth 2.0 credentials against a real provider (npm oidc-provider, PKCE required): connect a
//! user, run with the access token, refresh it before it expires and after a 401, and the
//! rules of the `state`.

use crate::harness::{db_contains, Server};
use crate::peers::OAuthPeer;
use ingot::config::SyncMode;
use ingot::store::credentials;
use serde_json::{json, Value};

struct Setup {
    s: Server,
    provider: OAuthPeer,
    user: String,
    integration: String,
}

fn setup() -> Setup {
    let s = Server::start_public(|_| {});
    let provider = OAuthPeer::start(&format!("{}/oauth/callback", s.config.public_url));
    let integration = s.create_integration(json!({
        "name": "Contacts", "app": "contacts", "credentialType": "oauth2",
        "oauth": {
            "authorizationUrl": format!("{}/auth", provider.issuer),
            "tokenUrl": format!("{}/token", provider.issuer),
            "scopes": ["openid", "offline_access"],
            "clientId": OAuthPeer::CLIENT_ID,
            "clientSecret": OAuthPeer::CLIENT_SECRET,
        },
        // The provider's own userinfo endpoint: it answers 200 only to a live access token.
        "workflows": [{ "name": "Who", "blocks": [{ "name": "Me", "type": "http", "url": format!("{}/me", provider.issuer) }] }]
    }));
    let user = s.create_user("oauth-user");
    Setup {
        s,
        provider,
        user,
        integration,
    }
}

impl Setup {
    fn oauth_url(&self) -> String {
        let r = self
            .s
            .get(&format!("/2024-03/headless/oauthUrl?userId={}&app=contacts", self.user));
        assert_eq!(r.status, 200, "{}", r.json);
        r.json["oauthUrl"].as_str().unwrap().to_string()
    }

    /// The provider's redirect back to ingot, after the user signed in and consented.
    fn authorized(&self, url: &str) -> String {
        self.provider
            .authorize(url, &format!("{}/oauth/callback", self.s.config.public_url))
    }

    fn callback(&self, url: &str) -> crate::harness::Reply {
        let path = url.strip_prefix(&self.s.config.public_url).unwrap();
        self.s.call("GET", path, &[], None)
    }

    /// The user's oauth2 credential data, opened the way only a run does.
    fn tokens(&self) -> Value {
        let conn = ingot::store::open_connection(&self.s.db_path(), SyncMode::Full).unwrap();
        let listed = credentials::list(&conn, &self.user).unwrap();
        let c = listed
            .iter()
            .rev()
            .find(|c| c.kind == "oauth2")
            .expect("an oauth2 credential");
        let plain = credentials::open_data(&conn, &self.s.app().store.secrets, &c.id, &self.user).unwrap();
        serde_json::from_slice(&plain).unwrap()
    }
}

#[test]
fn a_user_connects_and_runs_with_an_access_token_refreshed_before_expiry_and_after_a_401() {
    let t = setup();
    let url = t.oauth_url();
    assert!(url.starts_with(&format!("{}/auth?", t.provider.issuer)), "{url}");
    assert!(
        url.contains("code_challenge_method=S256") && url.contains("prompt=consent"),
        "{url}"
    );

    // The provider sends the browser back; the page says so, and the user has the credential.
    let back = t.authorized(&url);
    let page = ureq::get(&back).set("Accept", "text/html").call().unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.content_type(), "text/html");
    assert!(page
        .header("content-security-policy")
        .unwrap()
        .starts_with("default-src 'none'"));
    assert!(page.into_string().unwrap().contains("Contacts is connected"));
    let listed = t.s.get(&format!("/users/{}/credentials", t.user)).json["data"].clone();
    assert_eq!(listed[0]["type"], "oauth2");
    assert_eq!(listed[0]["name"], "Contacts");
    let first = t.tokens();
    let (access, refresh) = (
        first["accessToken"].as_str().unwrap().to_string(),
        first["refreshToken"].as_str().unwrap().to_string(),
    );
    assert!(
        ingot::ids::parse_rfc3339(first["expiresAt"].as_str().unwrap()).is_some(),
        "{first}"
    );
    assert_eq!(t.provider.stats()["codes"], 1);
    for secret in [access.as_str(), refresh.as_str(), OAuthPeer::CLIENT_SECRET] {
        assert!(
            !db_contains(&t.s.db_path(), secret.as_bytes()),
            "sealed, never in the file"
        );
    }
    assert!(!t
        .s
        .get(&format!("/integrations/{}", t.integration))
        .json
        .to_string()
        .contains(OAuthPeer::CLIENT_SECRET));

    // A run sends the access token: the provider's userinfo answers for the user.
    let wf = t.s.install(&t.user, &t.integration).remove(0);
    let run = t.s.run_and_wait_as(&t.s.key, &t.user, &wf, json!({}));
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["results"][0]["output"]["body"]["sub"], "user-1");
    assert_eq!(t.provider.stats()["refreshes"], 0, "a fresh token is not refreshed");

    // 59 minutes on, the hour-long token is within a minute of expiry: refreshed before use.
    t.s.app().clock.advance(59 * 60 * 1000);
    let run = t.s.run_and_wait_as(&t.s.key, &t.user, &wf, json!({}));
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(t.provider.stats()["refreshes"], 1);
    let second = t.tokens();
    assert_ne!(
        second["accessToken"], first["accessToken"],
        "the refreshed token was written back"
    );
    assert_ne!(
        second["refreshToken"], first["refreshToken"],
        "the provider rotates refresh tokens"
    );

    // The provider no longer knows the access token: the app answers 401, ingot refreshes once.
    t.provider.forget(second["accessToken"].as_str().unwrap());
    let run = t.s.run_and_wait_as(&t.s.key, &t.user, &wf, json!({}));
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(t.provider.stats()["refreshes"], 2);
    assert_ne!(t.tokens()["accessToken"], second["accessToken"]);

    // The user revokes the grant at the provider: the run fails, and says why without a token.
    let third = t.tokens();
    t.provider.revoke(third["refreshToken"].as_str().unwrap());
    let run = t.s.run_and_wait_as(&t.s.key, &t.user, &wf, json!({}));
    assert_eq!(run["status"], "failed");
    let error = run["results"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("could not be refreshed") && error.contains("invalid_grant"),
        "{error}"
    );
    assert!(!error.contains(third["refreshToken"].as_str().unwrap()));
}

#[test]
fn a_state_works_once_for_ten_minutes_and_binds_the_credential_to_its_user() {
    let t = setup();
    // Used once.
    let back = t.authorized(&t.oauth_url());
    assert_eq!(t.callback(&back).status, 200);
    let again = t.callback(&back);
    assert_eq!(again.status, 410, "{}", again.json);
    assert!(again.message().contains("completed already"), "{}", again.message());
    // Unknown, or missing.
    assert_eq!(t.s.get("/oauth/callback?state=nothing&code=x").status, 404);
    assert_eq!(t.s.get("/oauth/callback?code=x").status, 400);
    // Expired: the provider's answer comes eleven minutes later.
    let url = t.oauth_url();
    let back = t.authorized(&url);
    t.s.app().clock.advance(11 * 60 * 1000);
    let late = t.callback(&back);
    assert_eq!(late.status, 410);
    assert!(late.message().contains("expired"), "{}", late.message());
    // The provider refuses: no credential, a clear page.
    let url = t.oauth_url();
    let state = url.split("state=").nth(1).unwrap().split('&').next().unwrap();
    let refused = t.s.get(&format!("/oauth/callback?state={state}&error=access_denied"));
    assert_eq!(refused.status, 400);
    assert!(refused.message().contains("access_denied"), "{}", refused.message());
    let count = t.s.get(&format!("/users/{}/credentials", t.user)).json["data"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(count, 1, "only the first connection made a credential");

    // The credential goes to the user who asked, whoever follows the link; the older route
    // and a user token ask the same way.
    let other = t.s.create_user("other-oauth");
    let token = t.s.token(&other);
    let r =
        t.s.as_user(&token, "GET", &format!("/users/{other}/credentials/contacts"), None);
    assert_eq!(r.status, 200, "{}", r.json);
    let back = t.authorized(r.json["oauthUrl"].as_str().unwrap());
    assert_eq!(t.callback(&back).status, 200);
    let theirs = t.s.get(&format!("/users/{other}/credentials")).json["data"].clone();
    assert_eq!(theirs[0]["type"], "oauth2");
    assert_eq!(
        t.s.as_user(
            &token,
            "GET",
            &format!("/headless/oauthUrl?userId={}&app=contacts", t.user),
            None
        )
        .status,
        403
    );
    assert_eq!(
        t.s.get(&format!("/headless/oauthUrl?userId={}&app=nothing", t.user))
            .status,
        404
    );
}

#[test]
fn an_oauth_provider_needs_its_client_secret_and_keeps_it_across_versions() {
    let s = Server::start();
    let def = |secret: Option<&str>, scope: &str| {
        let mut oauth = json!({ "authorizationUrl": "https://id.example/auth", "tokenUrl": "https://id.example/token",
                                "scopes": [scope], "clientId": "c" });
        if let Some(secret) = secret {
            oauth["clientSecret"] = json!(secret);
        }
        json!({ "name": "O", "app": "o", "credentialType": "oauth2", "oauth": oauth,
                "workflows": [{ "name": "w", "blocks": [{ "type": "fail" }] }] })
    };
    let r = s.post("/integrations", def(None, "a"));
    assert_eq!(r.status, 422);
    assert!(r.message().contains("clientSecret"), "{}", r.message());
    let made = s.post("/integrations", def(Some("first-secret-value"), "a"));
    assert_eq!(made.status, 200, "{}", made.json);
    assert_eq!(made.json["oauth"]["clientId"], "c");
    assert!(made.json["oauth"].get("clientSecret").is_none());
    // A new version may leave the secret out: the stored one is kept.
    let v2 = s.post("/integrations", def(None, "b"));
    assert_eq!((v2.status, v2.json["version"].clone()), (200, json!(2)), "{}", v2.json);
    let id = made.json["integrationId"].as_str().unwrap();
    let conn = ingot::store::open_connection(&s.db_path(), SyncMode::Full).unwrap();
    let (_, sealed) = ingot::store::integrations::oauth(&conn, ingot::store::Env::Development, id)
        .unwrap()
        .unwrap();
    let secret = s
        .app()
        .store
        .secrets
        .open(&sealed.unwrap(), &ingot::store::integrations::oauth_aad(id))
        .unwrap();
    assert_eq!(secret, b"first-secret-value");
    assert!(!db_contains(&s.db_path(), b"first-secret-value"));
}
