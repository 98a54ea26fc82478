//! Real outside peers, run from the Python environment `tests/run.sh` installs: a webhook
//! receiver that verifies with the `standardwebhooks` library, and a `moto` AWS with signature
//! checking on.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
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
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let moto = py.parent().unwrap().join("moto_server");
        let child = Command::new(moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", &setup_actions)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
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
