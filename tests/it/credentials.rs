//! Credentials: stored sealed, listed without data, never readable back, re-sealed on rotation.

use crate::harness::{count, db_contains, open_db, Server};
use ingot::config::{MasterKeySource, SyncMode};
use ingot::crypto::{envelope_key_id, Keyring};
use ingot::store::{credentials, signing, Secrets};
use serde_json::{json, Value};

fn marker() -> String {
    format!("s3cret-{}", ingot::ids::hex(&ingot::ids::random_bytes(12)))
}

#[test]
fn both_create_forms_store_a_credential_that_is_listed_without_its_data() {
    let s = Server::start();
    let id = s.create_user("cred");
    let secret = marker();
    let a = s.post("/headless/credentials", json!({ "userId": id, "credential": { "type": "httpHeaderAuth", "name": "Main", "data": { "fieldName": "X-Api-Key", "value": secret } } }));
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.json["success"], true);
    let b = s.post(
        "/2023-12/users/cred/credentials",
        json!({ "type": "apiKey", "data": { "apiKey": secret } }),
    );
    assert_eq!(b.status, 200, "{}", b.json);
    for path in [
        format!("/users/{id}/credentials"),
        "/credentials/users/cred".to_string(),
    ] {
        let r = s.get(&path);
        assert_eq!(r.status, 200);
        let data = r.json["data"].as_array().unwrap();
        assert_eq!(data.len(), 2);
        assert_eq!(data[0]["credentialId"], a.json["credentialId"]);
        assert_eq!(
            (data[0]["type"].as_str(), data[0]["name"].as_str()),
            (Some("httpHeaderAuth"), Some("Main"))
        );
        for c in data {
            for field in ["credentialId", "type", "name", "createdAt", "updatedAt"] {
                assert!(c.get(field).is_some(), "{field}");
            }
        }
        assert!(!r.json.to_string().contains(&secret), "data leaked in a listing");
    }
    let del = s.req(
        "DELETE",
        &format!("/users/{id}/credentials/{}", b.json["credentialId"].as_str().unwrap()),
        None,
    );
    assert_eq!(del.json, json!({ "success": true }));
    assert_eq!(
        s.get(&format!("/users/{id}/credentials")).json["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn credentials_refuse_bad_input_and_unknown_users() {
    let s = Server::start();
    let id = s.create_user("c2");
    let path = format!("/users/{id}/credentials");
    assert_eq!(s.post(&path, json!({ "data": {} })).status, 422);
    assert_eq!(s.post(&path, json!({ "type": "x" })).status, 422);
    assert_eq!(s.post(&path, json!({ "type": "x", "data": "flat" })).status, 400);
    assert_eq!(s.post(&path, json!({ "type": 3, "data": {} })).status, 400);
    assert_eq!(s.post("/headless/credentials", json!({ "userId": id })).status, 422);
    assert_eq!(
        s.post(
            "/headless/credentials",
            json!({ "credential": { "type": "x", "data": {} } })
        )
        .status,
        422
    );
    let r = s.post(
        "/users/nobody/credentials",
        json!({ "type": "apiKey", "data": { "apiKey": "k" } }),
    );
    assert_eq!(r.status, 404);
    assert!(r.message().contains("user"));
    let other = s.create_user("c3");
    let cid = s
        .post(&path, json!({ "type": "apiKey", "data": { "apiKey": "k" } }))
        .json["credentialId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        s.req("DELETE", &format!("/users/{other}/credentials/{cid}"), None)
            .status,
        404,
        "another user's credential"
    );
    assert_eq!(
        s.req("DELETE", &format!("/users/{id}/credentials/{cid}"), None).status,
        200
    );
}

#[test]
fn a_user_token_manages_only_its_own_users_credentials() {
    let s = Server::start();
    let a = s.create_user("ua");
    let b = s.create_user("ub");
    let token = s.token(&a);
    let body = json!({ "type": "apiKey", "data": { "apiKey": "k" } });
    assert_eq!(
        s.as_user(&token, "POST", &format!("/users/{a}/credentials"), Some(&body))
            .status,
        200
    );
    let headless = json!({ "credential": { "type": "apiKey", "data": { "apiKey": "k" } } });
    assert_eq!(
        s.as_user(&token, "POST", "/headless/credentials", Some(&headless))
            .status,
        200
    );
    assert_eq!(
        s.as_user(&token, "GET", "/users/ua/credentials", None).json["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        s.as_user(&token, "POST", &format!("/users/{b}/credentials"), Some(&body))
            .status,
        403
    );
    assert_eq!(
        s.as_user(&token, "GET", &format!("/credentials/users/{b}"), None)
            .status,
        403
    );
    let into_b = json!({ "userId": b, "credential": { "type": "apiKey", "data": {} } });
    assert_eq!(
        s.as_user(&token, "POST", "/headless/credentials", Some(&into_b)).status,
        403
    );
    // A user token is not an API key.
    assert_eq!(s.as_user(&token, "GET", "/users", None).status, 401);
}

#[test]
fn secrets_are_never_in_the_database_file_in_plain_text_even_after_delete() {
    let mut s = Server::start();
    let id = s.create_user("vault");
    let secret = marker();
    let r = s.post(
        &format!("/users/{id}/credentials"),
        json!({ "type": "apiKey", "data": { "apiKey": secret } }),
    );
    let cid = r.json["credentialId"].as_str().unwrap().to_string();
    let db = s.db_path();
    assert!(
        !db_contains(&db, secret.as_bytes()),
        "plaintext credential in the database while running"
    );
    let sealed: Vec<u8> = open_db(&db)
        .query_row("SELECT data_sealed FROM credentials WHERE id = ?1", [&cid], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(sealed.len() > 28);
    s.stop();
    assert!(
        db_contains(&db, &sealed),
        "control: the sealed bytes are findable in the file"
    );
    assert!(!db_contains(&db, secret.as_bytes()));
    // The API key's secret part and the master key are not in the file either.
    let key_secret = s.key.splitn(4, '_').nth(3).unwrap().to_string();
    assert!(!db_contains(&db, key_secret.as_bytes()), "API key stored in plain text");
    let MasterKeySource::File(key_file) = &s.config.master_key else {
        panic!()
    };
    let key_text = std::fs::read_to_string(key_file).unwrap();
    let master_hex = key_text
        .lines()
        .find(|l| !l.starts_with('#'))
        .unwrap()
        .trim()
        .to_string();
    assert!(!db_contains(&db, master_hex.as_bytes()));
    assert!(!db_contains(&db, &ingot::ids::unhex(&master_hex).unwrap()));

    s.restart();
    assert_eq!(
        s.req("DELETE", &format!("/users/{id}/credentials/{cid}"), None).status,
        200
    );
    s.stop();
    assert!(
        !db_contains(&db, &sealed[1 + 4 + 12..]),
        "deleted ciphertext still in the file (secure_delete)"
    );
}

#[test]
fn the_master_key_file_is_private() {
    let s = Server::start();
    let MasterKeySource::File(key_file) = &s.config.master_key else {
        panic!()
    };
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// Every credential's data, opened straight from the file with `secrets`.
fn open_all(s: &Server, secrets: &Secrets) -> Vec<(String, Value)> {
    let conn = ingot::store::open_connection(&s.db_path(), SyncMode::Full).unwrap();
    let rows: Vec<(String, String)> = conn
        .prepare("SELECT id, user_id FROM credentials ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows.into_iter()
        .map(|(id, user)| {
            let plain = credentials::open_data(&conn, secrets, &id, &user).unwrap();
            (id, serde_json::from_slice(&plain).unwrap())
        })
        .collect()
}

#[test]
fn rotate_master_reseals_every_secret_while_the_server_keeps_serving() {
    let mut s = Server::start_configured(|c| c.max_credentials = 1000);
    let id = s.create_user("rotor");
    for i in 0..40 {
        assert_eq!(
            s.post(
                &format!("/users/{id}/credentials"),
                json!({ "type": "apiKey", "data": { "apiKey": format!("k{i}") } })
            )
            .status,
            200
        );
    }
    let MasterKeySource::File(key_file) = s.config.master_key.clone() else {
        panic!()
    };
    let old_id = Keyring::read_file(&key_file).unwrap().first_id();

    // Writes keep arriving during the rotation.
    let (base, key) = (s.base.clone(), s.key.clone());
    let user = id.clone();
    let writer = std::thread::spawn(move || {
        let agent = ureq::agent();
        (40..140)
            .map(|i| {
                agent
                    .post(&format!("{base}/users/{user}/credentials"))
                    .set("Authorization", &format!("Bearer {key}"))
                    .send_string(&json!({ "type": "apiKey", "data": { "apiKey": format!("k{i}") } }).to_string())
                    .map(|r| r.status())
                    .unwrap_or(0)
            })
            .collect::<Vec<_>>()
    });
    let rotation = ingot::admin::rotate_master(&s.config).unwrap();
    let statuses = writer.join().unwrap();
    assert!(
        statuses.iter().all(|&c| c == 200),
        "writes failed during rotation: {statuses:?}"
    );
    assert!(rotation.resealed >= 41, "{rotation:?}");

    let ring = Keyring::read_file(&key_file).unwrap();
    assert_eq!(ring.ids().len(), 1, "the old key is gone from the file");
    assert_ne!(ring.first_id(), old_id);
    let only_new = Secrets::load(&s.config.master_key).unwrap();
    let opened = open_all(&s, &only_new);
    assert_eq!(opened.len(), 140);
    let mut ns: Vec<i64> = opened
        .iter()
        .map(|(_, v)| v["apiKey"].as_str().unwrap()[1..].parse().unwrap())
        .collect();
    ns.sort();
    assert_eq!(ns, (0..140).collect::<Vec<_>>());
    let conn = open_db(&s.db_path());
    let blobs: Vec<Vec<u8>> = conn
        .prepare("SELECT data_sealed FROM credentials UNION ALL SELECT private_sealed FROM signing_keys")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(blobs.iter().all(|b| envelope_key_id(b) == Some(ring.first_id())));
    drop(conn);

    // A restart with only the new key in the file can still sign tokens and take credentials.
    s.restart();
    assert_eq!(s.get(&format!("/users/{id}/token")).status, 200);
    assert_eq!(
        s.post(
            &format!("/users/{id}/credentials"),
            json!({ "type": "bearerToken", "data": { "token": "t" } })
        )
        .status,
        200
    );
    let conn = ingot::store::open_connection(&s.db_path(), SyncMode::Full).unwrap();
    let kid = signing::current_kid(&conn).unwrap().unwrap();
    assert!(signing::private_key(&conn, &only_new, &kid).unwrap().is_some());
    assert_eq!(count(&conn, "SELECT count(*) FROM credentials"), 141);
}

#[test]
fn a_named_master_key_file_that_is_missing_is_an_error_not_a_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::harness::config_for(dir.path());
    let named = dir.path().join("elsewhere.key");
    config.master_key = MasterKeySource::File(named.clone());
    let e = ingot::start(config.clone(), std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("elsewhere.key"), "{e:#}");
    assert!(!named.exists());
    // Given an existing file, that key is used, and the file is left as it was.
    let key = ingot::ids::hex(&ingot::ids::random_bytes(32));
    std::fs::write(&named, &key).unwrap();
    let s = Server::start_with(dir, config);
    assert_eq!(s.get("/users").status, 200);
    assert_eq!(
        std::fs::read_to_string(&named).unwrap(),
        key,
        "the key file was rewritten"
    );
    let sealed_with = Keyring::read_file(&named).unwrap().first_id();
    let conn = open_db(&s.db_path());
    let blob: Vec<u8> = conn
        .query_row("SELECT private_sealed FROM signing_keys LIMIT 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        envelope_key_id(&blob),
        Some(sealed_with),
        "secrets are sealed with the given key"
    );
}

#[test]
fn a_database_without_its_master_key_refuses_to_start() {
    let mut s = Server::start();
    s.create_user("k");
    s.stop();
    let MasterKeySource::File(key_file) = s.config.master_key.clone() else {
        panic!()
    };
    std::fs::rename(&key_file, key_file.with_extension("moved")).unwrap();
    let e = ingot::start(s.config.clone(), std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("does not exist"), "{e:#}");
    assert!(
        !key_file.exists(),
        "no fresh key may be made for a database with secrets"
    );
    // The wrong key is refused as well.
    let mut wrong = s.config.clone();
    wrong.master_key = MasterKeySource::Inline(ingot::ids::hex(&ingot::ids::random_bytes(32)));
    assert!(ingot::start(wrong, std::net::TcpListener::bind("127.0.0.1:0").unwrap()).is_err());
}
