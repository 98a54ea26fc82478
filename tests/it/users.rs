//! The Users API as a customer's backend uses it.

use crate::harness::{count, open_db, Server};
use ingot::store::Env;
use serde_json::json;

#[test]
fn create_user_answers_id_username_and_full_name() {
    let s = Server::start();
    let r = s.post(
        "/users",
        json!({ "username": "alice@example.com", "fullName": "Alice A" }),
    );
    assert_eq!(r.status, 200);
    let id = r.json["userId"].as_str().unwrap();
    assert!(id.len() == 24 && id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    assert_eq!(r.json["username"], "alice@example.com");
    assert_eq!(r.json["fullName"], "Alice A");
    let by_email = s.post("/users", json!({ "email": "bob@example.com" }));
    assert_eq!(by_email.status, 200);
    assert_eq!(by_email.json["username"], "bob@example.com");
    assert!(by_email.json["fullName"].is_null());
}

#[test]
fn every_route_answers_bare_and_behind_a_version_prefix() {
    let s = Server::start();
    for (i, prefix) in ["", "/2023-01", "/2023-12", "/2024-03", "/2025-09"].iter().enumerate() {
        let name = format!("user{i}");
        let r = s.post(&format!("{prefix}/users/"), json!({ "username": name }));
        assert_eq!(r.status, 200, "{prefix}: {}", r.json);
        let got = s.get(&format!("{prefix}//users/{name}/"));
        assert_eq!(got.status, 200, "{prefix}");
        assert_eq!(got.json["username"], name);
    }
    let r = s.call(
        "GET",
        "/2024-03/users",
        &[
            ("Authorization", &format!("bearer {}", s.key)),
            ("x-api-version", "2025-09"),
        ],
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json["data"].as_array().unwrap().len(), 5);
}

#[test]
fn a_taken_username_is_409() {
    let s = Server::start();
    s.create_user("dup");
    let r = s.post("/users", json!({ "username": "dup" }));
    assert_eq!(r.status, 409);
    assert!(r.message().contains("dup"), "{}", r.message());
}

#[test]
fn batch_creates_the_valid_rows_and_reports_each_invalid_one() {
    let s = Server::start();
    s.create_user("existing");
    let r = s.post(
        "/users/batch",
        json!({ "users": [
            { "username": "b1", "fullName": "B One" },
            { "username": "b2" },
            { "username": "b1", "fullName": "again" },
            { "username": "existing", "fullName": "Ex" },
            { "username": "" },
            { "fullName": "no name" },
            { "username": "bad\u{7}bell" },
            7
        ] }),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    let created: Vec<&str> = r.json["createdUsers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(created, vec!["b1", "b2"]);
    let invalid = r.json["invalidUsers"].as_array().unwrap();
    assert_eq!(invalid.len(), 6, "{invalid:?}");
    let reason_for = |name: &str| {
        invalid
            .iter()
            .find(|u| u["username"] == name)
            .map(|u| u["reason"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert!(reason_for("b1").contains("more than once"));
    assert!(reason_for("existing").contains("already taken"));
    assert_eq!(
        invalid.iter().find(|u| u["username"] == "existing").unwrap()["fullName"],
        "Ex"
    );
    assert!(reason_for("").contains("empty"));
    assert!(reason_for("bad\u{7}bell").contains("control character"));
    assert!(r.json["message"].as_str().unwrap().contains("2 users created"));
    assert_eq!(s.get("/users/b1").json["fullName"], "B One");
}

#[test]
fn a_batch_over_1000_is_refused_whole() {
    let s = Server::start();
    let users: Vec<_> = (0..1001).map(|i| json!({ "username": format!("u{i}") })).collect();
    let r = s.post("/users/batch", json!({ "users": users }));
    assert_eq!(r.status, 422);
    assert!(r.message().contains("1000"));
    assert_eq!(s.get("/users").json["data"].as_array().unwrap().len(), 0);
    let users: Vec<_> = (0..1000).map(|i| json!({ "username": format!("u{i}") })).collect();
    let r = s.post("/users/batch", json!({ "users": users }));
    assert_eq!(r.json["createdUsers"].as_array().unwrap().len(), 1000);
}

#[test]
fn list_pages_with_limit_and_cursor_and_filters_by_prefix() {
    let s = Server::start();
    let users: Vec<_> = (0..25)
        .map(|i| json!({ "username": format!("{}{:02}", if i % 2 == 0 { "even" } else { "odd" }, 24 - i) }))
        .collect();
    s.post("/users/batch", json!({ "users": users }));
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = s.get(&format!("/users?limit=10&cursor={cursor}"));
        assert_eq!(r.status, 200);
        let page = r.json["data"].as_array().unwrap();
        assert!(page.len() <= 10);
        seen.extend(page.iter().map(|u| u["username"].as_str().unwrap().to_string()));
        match r.json["nextCursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    // The list is in id order, and ids made one after another sort in the order they were made:
    // the pages give the users back in the order the batch created them.
    let made: Vec<String> = users
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, made);
    let odd = s.get("/users?q=odd");
    assert_eq!(odd.json["data"].as_array().unwrap().len(), 12);
    assert!(odd.json["nextCursor"].is_null());
    assert_eq!(s.get("/users?limit=0").status, 422);
    assert_eq!(s.get("/users?limit=1001").status, 422);
    assert_eq!(s.get("/users?limit=ten").status, 422);
}

#[test]
fn a_user_is_found_by_id_or_by_username() {
    let s = Server::start();
    let id = s.create_user("carol");
    let by_id = s.get(&format!("/users/{id}"));
    let by_name = s.get("/users/carol");
    assert_eq!(by_id.status, 200);
    assert_eq!(by_id.json, by_name.json);
    for field in ["userId", "username", "fullName", "disabled", "createdAt", "updatedAt"] {
        assert!(by_id.json.get(field).is_some(), "User lacks {field}");
    }
    assert!(by_id.json["createdAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(s.get("/users/nobody").status, 404);
    assert_eq!(s.get("/users/0123456789abcdef01234567").status, 404);
}

#[test]
fn update_changes_username_full_name_and_disabled() {
    let s = Server::start();
    let id = s.create_user("dave");
    s.create_user("taken");
    let r = s.req(
        "PUT",
        &format!("/users/{id}"),
        Some(&json!({ "username": "david", "fullName": "David D", "disabled": true })),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(
        (
            r.json["username"].as_str(),
            r.json["fullName"].as_str(),
            r.json["disabled"].as_bool()
        ),
        (Some("david"), Some("David D"), Some(true))
    );
    let r = s.req(
        "PATCH",
        "/users/david",
        Some(&json!({ "fullName": null, "disabled": false })),
    );
    assert_eq!(r.status, 200);
    assert!(r.json["fullName"].is_null());
    assert_eq!(r.json["disabled"], false);
    assert_eq!(r.json["username"], "david");
    let r = s.req("PUT", "/users/david", Some(&json!({ "username": "taken" })));
    assert_eq!(r.status, 409);
    assert_eq!(
        s.req("PUT", "/users/ghost", Some(&json!({ "fullName": "x" }))).status,
        404
    );
}

#[test]
fn delete_user_removes_the_user_and_their_credentials_together() {
    let s = Server::start();
    let id = s.create_user("erin");
    let c = s.post(
        &format!("/users/{id}/credentials"),
        json!({ "type": "apiKey", "data": { "apiKey": "k" } }),
    );
    assert_eq!(c.status, 200);
    let r = s.req("DELETE", "/users/erin", None);
    assert_eq!((r.status, r.json.clone()), (200, json!({ "success": true })));
    assert_eq!(s.get(&format!("/users/{id}")).status, 404);
    assert_eq!(s.req("DELETE", "/users/erin", None).status, 404);
    let conn = open_db(&s.db_path());
    assert_eq!(
        count(
            &conn,
            &format!("SELECT count(*) FROM credentials WHERE user_id = '{id}'")
        ),
        0
    );
    assert_eq!(count(&conn, "SELECT count(*) FROM credentials"), 0);
}

#[test]
fn deactivate_workflows_and_delete_logs_answer_for_known_users() {
    let s = Server::start();
    let id = s.create_user("fay");
    let r = s.req("PUT", &format!("/users/{id}/deactivate-workflows"), None);
    assert_eq!((r.status, r.json["message"].as_str()), (200, Some("Success")));
    let r = s.req("DELETE", "/users/fay/logs", None);
    assert_eq!(r.status, 200);
    assert!(r.json["message"].is_string());
    assert_eq!(s.req("PUT", "/users/ghost/deactivate-workflows", None).status, 404);
}

#[test]
fn data_of_one_environment_is_invisible_to_the_other() {
    let s = Server::start();
    let prod = s.new_key(Env::Production);
    let dev_id = s.create_user("shared-name");
    let r = s.req_as(&prod, "GET", &format!("/users/{dev_id}"), None);
    assert_eq!(r.status, 404);
    assert_eq!(
        s.req_as(&prod, "GET", "/users", None).json["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // The same username is free in the other environment.
    let r = s.req_as(&prod, "POST", "/users", Some(&json!({ "username": "shared-name" })));
    assert_eq!(r.status, 200);
    let prod_id = r.json["userId"].as_str().unwrap().to_string();
    assert_ne!(prod_id, dev_id);
    assert_eq!(s.req("DELETE", &format!("/users/{prod_id}"), None).status, 404);
    assert_eq!(
        s.req_as(&prod, "GET", "/users/shared-name", None).json["userId"],
        prod_id
    );
    assert_eq!(s.get("/users/shared-name").json["userId"], dev_id);
}

#[test]
fn concurrent_creates_all_land_and_survive_a_restart() {
    let mut s = Server::start();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (base, key) = (s.base.clone(), s.key.clone());
            std::thread::spawn(move || {
                let agent = ureq::agent();
                (0..40)
                    .map(|i| {
                        let r = agent
                            .post(&format!("{base}/users"))
                            .set("Authorization", &format!("Bearer {key}"))
                            .send_string(&json!({ "username": format!("t{t}-{i}") }).to_string())
                            .unwrap();
                        r.into_json::<serde_json::Value>().unwrap()["userId"]
                            .as_str()
                            .unwrap()
                            .to_string()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let ids: Vec<String> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert_eq!(ids.len(), 320);
    s.restart();
    for id in ids.iter().step_by(7) {
        assert_eq!(s.get(&format!("/users/{id}")).status, 200);
    }
    assert_eq!(count(&open_db(&s.db_path()), "SELECT count(*) FROM users"), 320);
}
