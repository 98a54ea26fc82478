//! The tiny_http edge: our own `Req`/`Resp`, body read once under a cap, panics caught per
//! request, one access-log line per request, and the worker loop.

use crate::error::ApiError;
use crate::handlers;
use crate::App;
use rusqlite::Connection;
use serde::Serialize;
use std::cell::{Ref, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a handler sees: the app, and a read connection borrowed from the store's pool the
/// first time the handler reads (so requests that never read hold none). The connection goes
/// back to the pool before the handler waits for a write ([`Ctx::write`]), so requests waiting
/// on a group commit do not hold readers the others need.
pub struct Ctx<'a> {
    pub app: &'a App,
    reader: RefCell<Option<crate::store::Reader<'a>>>,
    caller: std::cell::OnceCell<Option<crate::handlers::auth::Caller>>,
    /// The matched route's name, for the access line and the metrics.
    route: RefCell<String>,
    /// This request's turn to run (see `admission`), held while it uses the CPU.
    turn: RefCell<Option<crate::admission::Turn<'a>>>,
}

impl<'a> Ctx<'a> {
    pub fn new(app: &'a App) -> Ctx<'a> {
        Ctx {
            app,
            reader: RefCell::new(None),
            caller: std::cell::OnceCell::new(),
            route: RefCell::new("unknown".into()),
            turn: RefCell::new(None),
        }
    }

    /// Waits for this request's turn to run (see `admission`).
    pub fn take_turn(&self) {
        let turn = self.app.admission.enter();
        *self.turn.borrow_mut() = turn;
    }

    /// Gives the turn to the next request.
    pub fn give_turn(&self) {
        self.turn.borrow_mut().take();
    }

    /// Runs `f`, which waits on something other than the CPU, without holding a turn (and,
    /// on a poller thread, after handing its polling to another: see `tiny_http::before_block`).
    pub fn outside<T>(&self, f: impl FnOnce() -> T) -> T {
        tiny_http::before_block();
        let had = self.turn.borrow_mut().take().is_some();
        let out = f();
        if had {
            self.take_turn();
        }
        out
    }

    /// Records which route the request matched (`handlers::run` does, once): its variant's
    /// name, never the path, which may hold a username.
    pub fn set_route(&self, route: &crate::router::Route) {
        let text = format!("{route:?}");
        *self.route.borrow_mut() = text.split('(').next().unwrap_or_default().to_string();
    }

    /// Records who the request was authenticated as (once, in `dispatch`).
    pub fn set_caller(&self, caller: Option<crate::handlers::auth::Caller>) {
        let _ = self.caller.set(caller);
    }

    /// Who the request was authenticated as, if its route takes auth.
    pub fn caller(&self) -> Option<&crate::handlers::auth::Caller> {
        self.caller.get().and_then(Option::as_ref)
    }

    /// This request's read connection.
    pub fn db(&self) -> Result<Ref<'_, Connection>, ApiError> {
        if self.reader.borrow().is_none() {
            let r = self.app.store.read()?;
            *self.reader.borrow_mut() = Some(r);
        }
        Ok(Ref::map(self.reader.borrow(), |r| {
            &**r.as_ref().expect("set just above")
        }))
    }

    /// Runs `f` in the next group commit (see [`crate::store::Store::write`]), returning this
    /// request's read connection to the pool first.
    pub fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> crate::store::Result<T> + Send + 'static,
    ) -> crate::store::Result<T> {
        self.reader.borrow_mut().take();
        self.outside(|| self.app.store.write(f))
    }
}

/// A parsed request.
#[derive(Debug, Default)]
pub struct Req {
    pub method: String,
    /// The path as sent, without the query.
    pub path: String,
    /// Percent-decoded path segments, empty ones and a leading `YYYY-MM` version dropped.
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    /// Builds a request from a method and a request target such as `/2024-03//users/?q=a`.
    pub fn new(method: &str, target: &str) -> Req {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_decode(s, false))
            .collect();
        if segments.first().is_some_and(|s| is_version(s)) {
            segments.remove(0);
        }
        let query = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k, true), percent_decode(v, true))
            })
            .collect();
        Req {
            method: method.to_ascii_uppercase(),
            path: path.to_string(),
            segments,
            query,
            ..Req::default()
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The first value of query parameter `name`.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// `YYYY-MM`, the version segment every route may sit behind.
fn is_version(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 7 && b[4] == b'-' && b.iter().enumerate().all(|(i, c)| i == 4 || c.is_ascii_digit())
}

fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A response on its way out.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    /// Close the connection after this response: the request's body was not read to its end,
    /// and its rest must never be taken for another request.
    pub close: bool,
}

impl Resp {
    pub fn json(status: u16, value: &impl Serialize) -> Resp {
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        Resp {
            status,
            body,
            content_type: "application/json",
            headers: Vec::new(),
            close: false,
        }
    }

    /// `200` with a JSON body.
    pub fn ok(value: &impl Serialize) -> Resp {
        Resp::json(200, value)
    }
}

/// The request side's shared state: whether the server is stopping and how many requests are
/// in flight.
///
/// Requests are handled on the thread that found them waiting (on Linux a poller that takes
/// connections from epoll: see `vendor/tiny_http/src/util/poller.rs`), which saves a hand-off
/// between threads per request. Idle keep-alive connections may outlive the server; they get
/// `503`.
#[derive(Default)]
pub struct Edge {
    stop: AtomicBool,
    in_flight: AtomicUsize,
}

impl Edge {
    /// The function tiny_http calls for every request.
    pub fn handler(app: Arc<App>, edge: Arc<Edge>) -> tiny_http::Handler {
        Arc::new(move |rq| edge.serve(&app, rq))
    }

    fn serve(&self, app: &App, rq: tiny_http::Request) {
        // Counted before the stop flag is read, so a stop waits for every request that saw it
        // unset.
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let _done = InFlight(&self.in_flight);
        if self.stop.load(Ordering::SeqCst) {
            return send(
                rq,
                error_response(ApiError::Unavailable("a request arrived during shutdown".into())),
                true,
            );
        }
        handle(&Ctx::new(app), rq);
    }

    /// Stops taking requests and waits (up to `patience`) for the ones in flight.
    pub fn stop(&self, patience: Duration) {
        self.stop.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + patience;
        while self.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether log lines are JSON objects (`INGOT_LOG_FORMAT=json`); set once by the binary.
pub static JSON_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The request's id: its `X-Request-Id` when that is 1 to 128 visible ASCII characters, else
/// a new one. It is answered back and logged with the request.
fn request_id(rq: &tiny_http::Request) -> String {
    rq.headers()
        .iter()
        .find(|h| h.field.equiv("x-request-id"))
        .map(|h| h.value.as_str().to_string())
        .filter(|v| (1..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or_else(crate::ids::uuid_v4)
}

fn handle(ctx: &Ctx, mut rq: tiny_http::Request) {
    let started = Instant::now();
    let id = request_id(&rq);
    let req = read_request(&mut rq, ctx.app.config.max_body, ctx.app.config.body_timeout);
    let (method, path) = (
        rq.method().as_str().to_string(),
        rq.url().split('?').next().unwrap_or("").to_string(),
    );
    let mut resp = match req {
        Ok(req) if req.method == "OPTIONS" => preflight(),
        Ok(req) => {
            ctx.take_turn();
            let resp = dispatch_caught(ctx, &req);
            ctx.reader.borrow_mut().take();
            ctx.give_turn();
            resp
        }
        Err(e) => {
            // The body was not read to its end: whatever follows on this connection is
            // unframed, so nothing more is read from it.
            let mut resp = error_response(e);
            resp.close = true;
            resp
        }
    };
    let route = ctx.route.borrow().clone();
    let micros = started.elapsed().as_micros();
    ctx.app
        .metrics
        .request(&route, resp.status, started.elapsed().as_secs_f64());
    if JSON_LOGS.load(Ordering::Relaxed) {
        let line = serde_json::json!({
            "method": method, "route": route, "status": resp.status, "duration_us": micros, "request_id": id,
        });
        log::info!(target: "ingot::access", "{line}");
    } else {
        log::info!(target: "ingot::access", "{method} {path} {} {micros}us {route} id={id}", resp.status);
    }
    resp.headers.push(("X-Request-Id", id));
    // Any origin may read the token-authenticated API; the cookie-authenticated console, none.
    let cors = !handlers::console::is_console(&path);
    send(rq, resp, cors);
}

/// The response for an error: its status, `{"message"}`, and the headers some statuses carry.
/// The detail behind a 5xx is logged here, never sent.
pub fn error_response(e: ApiError) -> Resp {
    log_detail(&e);
    let mut resp = Resp::json(e.status(), &serde_json::json!({ "message": e.public_message() }));
    match e {
        ApiError::Unauthorized => resp.headers.push(("WWW-Authenticate", "Bearer".into())),
        ApiError::MethodNotAllowed(allow) => resp.headers.push(("Allow", allow.into())),
        ApiError::TooManyRequests(secs) => resp.headers.push(("Retry-After", secs.to_string())),
        _ => {}
    }
    resp
}

/// Logs what lies behind a 5xx (never sent to the client).
pub fn log_detail(e: &ApiError) {
    match e {
        ApiError::Internal(detail) => log::error!("internal error: {detail}"),
        ApiError::Unavailable(detail) => log::warn!("unavailable: {detail}"),
        ApiError::InsufficientStorage(detail) => log::error!("disk full: {detail}"),
        _ => {}
    }
}

/// Writes a response out; a client that went away is only worth a debug line.
fn send(rq: tiny_http::Request, mut resp: Resp, cors: bool) {
    // The embedded modal calls from the customer's pages with a user token in a header (never a
    // cookie), so any origin may read the answers.
    if cors {
        resp.headers.push(("Access-Control-Allow-Origin", "*".into()));
    }
    if resp.close {
        rq.close_connection();
        resp.headers.push(("Connection", "close".into()));
    }
    let mut out = tiny_http::Response::from_data(resp.body).with_status_code(resp.status);
    let content_type = tiny_http::Header::from_bytes("Content-Type", resp.content_type);
    out.add_header(content_type.expect("static header"));
    for (k, v) in resp.headers {
        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            out.add_header(h);
        }
    }
    if let Err(e) = rq.respond(out) {
        log::debug!("client went away before the response: {e}");
    }
}

/// The answer to a CORS preflight: any origin, our methods and the headers clients send.
fn preflight() -> Resp {
    Resp {
        status: 204,
        body: Vec::new(),
        content_type: "text/plain",
        headers: vec![
            (
                "Access-Control-Allow-Methods",
                "GET, POST, PUT, PATCH, DELETE, OPTIONS".into(),
            ),
            (
                "Access-Control-Allow-Headers",
                "Authorization, Content-Type, x-alloy-user-token, x-api-version".into(),
            ),
            ("Access-Control-Max-Age", "600".into()),
        ],
        close: false,
    }
}

/// Runs the handler; a panic is logged and answered `500` without killing the worker.
fn dispatch_caught(ctx: &Ctx, req: &Req) -> Resp {
    respond_caught(req, || handlers::dispatch(ctx, req))
}

fn respond_caught(req: &Req, handler: impl FnOnce() -> Result<Resp, ApiError>) -> Resp {
    match catch_unwind(AssertUnwindSafe(handler)) {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => error_response(e),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            error_response(ApiError::Internal(format!(
                "handler panicked on {} {}: {what}",
                req.method, req.path
            )))
        }
    }
}

/// The most of an oversized declared body read and discarded before its `413`.
const DISCARD_MAX: usize = 8 << 20;

fn read_request(rq: &mut tiny_http::Request, max_body: usize, body_timeout: Duration) -> Result<Req, ApiError> {
    let mut req = Req::new(rq.method().as_str(), rq.url());
    req.headers = rq
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_ascii_lowercase(),
                h.value.as_str().to_string(),
            )
        })
        .collect();
    if let Some(declared) = rq.body_length().filter(|n| *n > max_body) {
        // A modest excess is read and thrown away (through a small buffer, within the body
        // time limit) so that a client that sends before it reads still sees the 413; past
        // that, the connection is closed unread.
        if declared <= DISCARD_MAX {
            let deadline = Instant::now() + body_timeout;
            let mut sink = [0u8; 16 * 1024];
            let reader = rq.as_reader();
            while Instant::now() < deadline && matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
        }
        return Err(ApiError::PayloadTooLarge(max_body));
    }
    // No body declared (no Content-Length, no Transfer-Encoding): nothing to read.
    if rq.body_length().unwrap_or(0) == 0 && req.header("transfer-encoding").is_none() {
        return Ok(req);
    }
    // Each read waits at most the connection's read timeout; the whole body gets
    // `body_timeout`.
    let deadline = Instant::now() + body_timeout;
    // Grown as bytes arrive: a declared length is only a claim, and reserving it up front would
    // let idle connections hold a body's worth of memory each.
    let mut body = Vec::with_capacity(rq.body_length().unwrap_or(0).min(64 * 1024));
    let mut chunk = [0u8; 16 * 1024];
    let reader = rq.as_reader();
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(ApiError::RequestTimeout(
                    "the request body did not arrive in time".into(),
                ))
            }
            Err(e) => return Err(ApiError::BadRequest(format!("could not read the request body: {e}"))),
        };
        if n == 0 {
            break;
        }
        if body.len() + n > max_body {
            return Err(ApiError::PayloadTooLarge(max_body));
        }
        body.extend_from_slice(&chunk[..n]);
        if Instant::now() > deadline {
            return Err(ApiError::RequestTimeout(
                "the request body did not arrive in time".into(),
            ));
        }
    }
    req.body = body;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_prefix_doubled_and_trailing_slashes_are_stripped() {
        assert_eq!(Req::new("get", "/2024-03//users/").segments, vec!["users"]);
        assert_eq!(Req::new("GET", "/users").segments, vec!["users"]);
        assert_eq!(
            Req::new("GET", "//2023-12/users/abc/token/").segments,
            vec!["users", "abc", "token"]
        );
        // Only a leading version segment is a version.
        assert_eq!(Req::new("GET", "/users/2024-03").segments, vec!["users", "2024-03"]);
    }

    #[test]
    fn a_panicking_handler_is_answered_500_and_the_caller_goes_on() {
        let req = Req::new("GET", "/boom");
        for _ in 0..2 {
            let resp = respond_caught(&req, || panic!("boom"));
            assert_eq!(resp.status, 500);
            let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
            assert_eq!(body, serde_json::json!({ "message": "internal error" }));
        }
        let ok = respond_caught(&req, || Ok(Resp::ok(&1)));
        assert_eq!(ok.status, 200);
    }

    #[test]
    fn segments_and_query_are_percent_decoded() {
        let r = Req::new("GET", "/users/a%40b.com?q=al+ice&limit=5&x=%zz&tail=%4");
        assert_eq!(r.segments, vec!["users", "a@b.com"]);
        assert_eq!(r.query("q"), Some("al ice"));
        assert_eq!(r.query("limit"), Some("5"));
        assert_eq!(r.query("x"), Some("%zz"));
        assert_eq!(r.query("tail"), Some("%4"));
        assert_eq!(r.query("missing"), None);
    }
}
