//! Starts ingot in-process on port 0 with a temp-dir database and talks HTTP to it.

use ingot::config::Config;
use ingot::store::Env;
use serde_json::Value;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// A response: status, headers we care about, and the body as JSON.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub json: Value,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `message` of an error body.
    pub fn message(&self) -> &str {
        self.json["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no message in {}", self.json))
    }
}

/// A server in a temp dir; shut down when dropped.
pub struct Server {
    pub handle: Option<ingot::ServerHandle>,
    /// Kept so the database outlives the server.
    _dir: TempDir,
    pub config: Config,
    pub base: String,
    /// The development key made on first start.
    pub key: String,
    agent: ureq::Agent,
}

pub fn config_for(dir: &Path) -> Config {
    let db = dir.join("ingot.db").display().to_string();
    Config::from_vars(|k| match k {
        "INGOT_LISTEN" => Some("127.0.0.1:0".into()),
        "INGOT_DB" => Some(db.clone()),
        _ => None,
    })
    .unwrap()
}

impl Server {
    pub fn start() -> Server {
        Server::start_configured(|_| {})
    }

    /// Starts a server after `change` adjusts its configuration.
    pub fn start_configured(change: impl FnOnce(&mut Config)) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config_for(dir.path());
        change(&mut config);
        Server::start_with(dir, config)
    }

    /// Starts a server whose public URL is its real address, for callbacks from outside.
    pub fn start_public(change: impl FnOnce(&mut Config)) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config_for(dir.path());
        change(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        config.public_url = format!("http://{}", listener.local_addr().unwrap());
        Server::start_on(dir, config, listener, None)
    }

    pub fn start_with(dir: TempDir, config: Config) -> Server {
        Server::start_on(dir, config, TcpListener::bind("127.0.0.1:0").unwrap(), None)
    }

    /// Starts a server on a database that has keys already (a restored one); `key` is one of them.
    pub fn start_with_key(dir: TempDir, config: Config, key: &str) -> Server {
        Server::start_on(
            dir,
            config,
            TcpListener::bind("127.0.0.1:0").unwrap(),
            Some(key.to_string()),
        )
    }

    fn start_on(dir: TempDir, config: Config, listener: TcpListener, key: Option<String>) -> Server {
        // Quiet unless INGOT_LOG asks (e.g. INGOT_LOG=debug cargo test name -- --nocapture).
        let _ = env_logger::Builder::from_env(env_logger::Env::default().filter_or("INGOT_LOG", "off"))
            .is_test(true)
            .try_init();
        let handle = ingot::start(config.clone(), listener).unwrap();
        let key = handle
            .first_key
            .clone()
            .or(key)
            .expect("a new database makes a development key");
        let base = format!("http://{}", handle.addr());
        let agent = ureq::AgentBuilder::new()
            .timeout(std::time::Duration::from_secs(30))
            .build();
        Server {
            handle: Some(handle),
            _dir: dir,
            config,
            base,
            key,
            agent,
        }
    }

    /// Stops the server and starts it again on the same database (on a new port).
    pub fn restart(&mut self) {
        self.stop();
        let handle = ingot::start(self.config.clone(), TcpListener::bind("127.0.0.1:0").unwrap()).unwrap();
        assert!(handle.first_key.is_none(), "a restart must not make another first key");
        self.base = format!("http://{}", handle.addr());
        self.handle = Some(handle);
    }

    /// Stops the server; the database is closed and checkpointed.
    pub fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
    }

    /// The running server's shared state (for test seams: its clock, its writer's counters).
    pub fn app(&self) -> &std::sync::Arc<ingot::App> {
        self.handle.as_ref().expect("the server is running").app()
    }

    pub fn db_path(&self) -> PathBuf {
        self.config.db.clone()
    }

    /// A key for `env`, made the way an operator makes one.
    pub fn new_key(&self, env: Env) -> String {
        ingot::admin::create_key(&self.config, env, "test").unwrap().1
    }

    /// A request with an arbitrary set of headers.
    pub fn call(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Reply {
        let mut rq = self.agent.request(method, &format!("{}{path}", self.base));
        for (k, v) in headers {
            rq = rq.set(k, v);
        }
        let result = match body {
            Some(b) => rq.set("Content-Type", "application/json").send_string(b),
            None => rq.call(),
        };
        let resp = match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: transport error {e}"),
        };
        let status = resp.status();
        let headers = resp
            .headers_names()
            .iter()
            .map(|n| (n.clone(), resp.header(n).unwrap_or("").to_string()))
            .collect();
        let text = resp.into_string().unwrap();
        let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text:?}"));
        crate::openapi::check(method, path, status, &json);
        Reply { status, json, headers }
    }

    /// A request with this server's development key.
    pub fn req(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        self.req_as(&self.key, method, path, body)
    }

    pub fn req_as(&self, key: &str, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let auth = format!("Bearer {key}");
        self.call(
            method,
            path,
            &[("Authorization", &auth)],
            body.map(|b| b.to_string()).as_deref(),
        )
    }

    pub fn get(&self, path: &str) -> Reply {
        self.req("GET", path, None)
    }

    pub fn post(&self, path: &str, body: Value) -> Reply {
        self.req("POST", path, Some(&body))
    }

    /// Waits (polling, bounded) until every execution of `workflow` is finished; returns them.
    pub fn wait_for_runs(&self, workflow: &str, expected: usize) -> Vec<Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let r = self.get(&format!("/workflows/{workflow}/logs?limit=30"));
            assert_eq!(r.status, 200, "{}", r.json);
            let runs = r.json["data"].as_array().unwrap().clone();
            if runs.len() >= expected && runs.iter().all(|e| e["finished"] == true) {
                return runs;
            }
            assert!(std::time::Instant::now() < deadline, "runs did not finish: {runs:?}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Creates an integration and returns its id.
    pub fn create_integration(&self, body: Value) -> String {
        let r = self.post("/integrations", body);
        assert_eq!(r.status, 200, "{}", r.json);
        r.json["integrationId"].as_str().unwrap().to_string()
    }

    /// Installs an integration for a user; returns the workflow ids, in template order.
    pub fn install(&self, user: &str, integration: &str) -> Vec<String> {
        let r = self.post(
            &format!("/users/{user}/integrations/{integration}/install"),
            serde_json::json!({}),
        );
        assert_eq!(r.status, 200, "{}", r.json);
        r.json["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["workflowId"].as_str().unwrap().to_string())
            .collect()
    }

    /// With `key`: creates the integration and a user, gives the user `credential` (if any),
    /// and installs it; returns (user id, first workflow id).
    pub fn installed_as(
        &self,
        key: &str,
        integration: Value,
        username: &str,
        credential: Option<Value>,
    ) -> (String, String) {
        let r = self.req_as(key, "POST", "/integrations", Some(&integration));
        assert_eq!(r.status, 200, "{}", r.json);
        let iid = r.json["integrationId"].as_str().unwrap().to_string();
        let r = self.req_as(
            key,
            "POST",
            "/users",
            Some(&serde_json::json!({ "username": username })),
        );
        assert_eq!(r.status, 200, "{}", r.json);
        let user = r.json["userId"].as_str().unwrap().to_string();
        if let Some(c) = credential {
            let r = self.req_as(key, "POST", &format!("/users/{user}/credentials"), Some(&c));
            assert_eq!(r.status, 200, "{}", r.json);
        }
        let r = self.req_as(
            key,
            "POST",
            &format!("/users/{user}/integrations/{iid}/install"),
            Some(&serde_json::json!({})),
        );
        assert_eq!(r.status, 200, "{}", r.json);
        (user, r.json["data"][0]["workflowId"].as_str().unwrap().to_string())
    }

    /// With `key`: runs the workflow with `data` and waits (bounded) for the run to finish.
    pub fn run_and_wait_as(&self, key: &str, user: &str, workflow: &str, data: Value) -> Value {
        let body = serde_json::json!({ "userId": user, "workflowId": workflow, "data": data });
        let r = self.req_as(key, "POST", "/run/workflow", Some(&body));
        assert_eq!(r.status, 200, "{}", r.json);
        let id = r.json["executionId"].clone();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let r = self.req_as(key, "GET", &format!("/workflows/{workflow}/logs?limit=30"), None);
            let ex = r.json["data"]
                .as_array()
                .and_then(|a| a.iter().find(|e| e["executionId"] == id).cloned());
            if let Some(ex) = ex.filter(|e| e["finished"] == true) {
                return ex;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "run {id} did not finish: {}",
                r.json
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Creates a user and returns its id.
    pub fn create_user(&self, username: &str) -> String {
        let r = self.post("/users", serde_json::json!({ "username": username }));
        assert_eq!(r.status, 200, "{}", r.json);
        r.json["userId"].as_str().unwrap().to_string()
    }

    /// Mints a user token.
    pub fn token(&self, user: &str) -> String {
        let r = self.get(&format!("/users/{user}/token"));
        assert_eq!(r.status, 200, "{}", r.json);
        r.json["token"].as_str().unwrap().to_string()
    }

    /// A request carrying a user token instead of a key.
    pub fn as_user(&self, token: &str, method: &str, path: &str, body: Option<&Value>) -> Reply {
        self.call(
            method,
            path,
            &[("x-alloy-user-token", token)],
            body.map(|b| b.to_string()).as_deref(),
        )
    }
}

/// Whether `needle` occurs anywhere in the file at `path` (a missing file holds nothing).
pub fn file_contains(path: &Path, needle: &[u8]) -> bool {
    match std::fs::read(path) {
        Ok(bytes) => bytes.windows(needle.len()).any(|w| w == needle),
        Err(_) => false,
    }
}

/// Whether `needle` occurs in the database file or its WAL.
pub fn db_contains(db: &Path, needle: &[u8]) -> bool {
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    file_contains(db, needle) || file_contains(&wal, needle)
}

/// A direct connection to a server's database file, for checking what is stored.
pub fn open_db(db: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(db).unwrap()
}

pub fn count(conn: &rusqlite::Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Milliseconds since the epoch of an RFC 3339 UTC time such as `2021-09-30T12:46:10.562Z`.
pub fn epoch_ms(t: &str) -> i64 {
    let field = |r: std::ops::Range<usize>| t[r].parse::<i64>().unwrap();
    let (y, m, d) = (field(0..4), field(5..7), field(8..10));
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let days = era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
    let secs = ((days * 24 + field(11..13)) * 60 + field(14..16)) * 60 + field(17..19);
    secs * 1000 + field(20..23)
}
