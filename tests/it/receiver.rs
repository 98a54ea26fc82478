//! A fake outside server: a second tiny_http on port 0 that answers what the test says and
//! records every request it got.

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Got {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct Receiver {
    pub url: String,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    body: Arc<Mutex<String>>,
    got: Arc<Mutex<Vec<Got>>>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Starts a receiver answering 200.
    pub fn start() -> Receiver {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let status = Arc::new(AtomicU16::new(200));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let got = Arc::new(Mutex::new(Vec::new()));
        let body = Arc::new(Mutex::new("{\"ok\":true}".to_string()));
        let (srv, st, dl, g, b) = (
            server.clone(),
            status.clone(),
            delay_ms.clone(),
            got.clone(),
            body.clone(),
        );
        let thread = std::thread::spawn(move || {
            for mut rq in srv.incoming_requests() {
                let mut body = String::new();
                let _ = rq.as_reader().read_to_string(&mut body);
                let headers = rq
                    .headers()
                    .iter()
                    .map(|h| (h.field.to_string(), h.value.to_string()))
                    .collect();
                g.lock().unwrap().push(Got {
                    method: rq.method().to_string(),
                    path: rq.url().to_string(),
                    headers,
                    body,
                });
                std::thread::sleep(Duration::from_millis(dl.load(Ordering::SeqCst)));
                let code = st.load(Ordering::SeqCst);
                let answer = b.lock().unwrap().clone();
                let _ = rq.respond(tiny_http::Response::from_string(answer).with_status_code(code));
            }
        });
        Receiver {
            url,
            status,
            delay_ms,
            body,
            got,
            server,
            thread: Some(thread),
        }
    }

    /// Answers every following request with `status`.
    pub fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Answers every following request with this body.
    pub fn answer_body(&self, body: &str) {
        *self.body.lock().unwrap() = body.to_string();
    }

    /// Waits this long before answering each request.
    pub fn delay(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
