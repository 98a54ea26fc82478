//! Workflow runs: a durable queue (the `executions` table) drained by a pool of worker threads.
//!
//! A run is stored `queued` in the transaction that answers `POST /run/...`; its id is then
//! handed to the in-memory queue. A worker claims it (`queued` → `running`, one transaction, so
//! only one worker ever has it), runs its blocks in order outside any transaction, and finishes
//! it — status, block results and the error log of a failure — in one transaction. On start,
//! runs left `running` by a crash go back to `queued` and every queued run is queued again, so
//! none is lost and none finishes twice. (A block that was mid-request at a crash is sent
//! again: block side effects are at least once.)

use crate::store::{credentials, error_logs, executions, integrations, workflows, Env, StoreError};
use crate::workflow::{self, Block, DEFAULT_TIMEOUT_MS};
use crate::{ids, App};
use crate::{oauth, outbound, request_signing};
use base64::Engine as _;
use rusqlite::Connection;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The most of a reply body kept in a block's result.
const MAX_KEPT_BODY: u64 = 64 * 1024;

/// Runs waiting for a worker, one queue per environment, and how many workers each
/// environment has busy.
#[derive(Default)]
struct Queues {
    waiting: [VecDeque<String>; 2],
    busy: [usize; 2],
    /// The environment served first next time (they take turns).
    turn: usize,
}

fn slot(env: Env) -> usize {
    match env {
        Env::Development => 0,
        Env::Production => 1,
    }
}

/// The queue and its workers.
///
/// Fair between environments: they take turns, and neither may keep more than all workers
/// but one busy, so one environment's slow runs (hanging on a slow server, say) always leave
/// a worker for the other's.
#[derive(Default)]
pub struct Engine {
    queues: Mutex<Queues>,
    ready: Condvar,
    stop: AtomicBool,
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// Workers started; an environment may have at most `max(1, n - 1)` of them busy.
    started: std::sync::atomic::AtomicUsize,
}

impl Engine {
    /// Re-queues what a previous process left unfinished and starts `n` workers.
    pub fn start(app: &Arc<App>, n: usize) -> anyhow::Result<()> {
        let pending = app.store.write(executions::recover)?;
        if !pending.is_empty() {
            log::info!("resuming {} queued runs", pending.len());
        }
        {
            let mut q = app.engine.queues.lock().unwrap_or_else(|p| p.into_inner());
            for (id, env) in pending {
                q.waiting[slot(env)].push_back(id);
            }
        }
        app.engine.started.store(n, Ordering::SeqCst);
        let mut workers = app.engine.workers.lock().unwrap_or_else(|p| p.into_inner());
        for i in 0..n {
            let app = app.clone();
            workers.push(
                std::thread::Builder::new()
                    .name(format!("ingot-run-{i}"))
                    .spawn(move || run_worker(&app))?,
            );
        }
        Ok(())
    }

    /// Hands a committed, queued run of `env` to the workers.
    pub fn enqueue(&self, env: Env, execution_id: String) {
        self.queues.lock().unwrap_or_else(|p| p.into_inner()).waiting[slot(env)].push_back(execution_id);
        self.ready.notify_all();
    }

    /// Runs waiting for a worker, per environment (development, production).
    pub fn waiting(&self) -> [usize; 2] {
        let q = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        [q.waiting[0].len(), q.waiting[1].len()]
    }

    /// Worker threads that have ended while the engine runs (a panic outside a run).
    pub fn dead(&self) -> usize {
        self.workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|w| w.is_finished())
            .count()
    }

    /// Lets each worker finish the run in hand, then stops them. Runs still queued stay queued
    /// in the database for the next start.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.ready.notify_all();
        let workers: Vec<_> = self
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for w in workers {
            let _ = w.join();
        }
    }

    /// The next run a worker may take, counted busy for its environment until [`Engine::done`].
    fn next(&self) -> Option<(String, Env)> {
        let cap = self.started.load(Ordering::SeqCst).saturating_sub(1).max(1);
        let mut q = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return None;
            }
            for i in 0..2 {
                let s = (q.turn + i) % 2;
                if q.busy[s] < cap {
                    if let Some(id) = q.waiting[s].pop_front() {
                        q.busy[s] += 1;
                        q.turn = (s + 1) % 2;
                        let env = if s == 0 { Env::Development } else { Env::Production };
                        return Some((id, env));
                    }
                }
            }
            q = self
                .ready
                .wait_timeout(q, Duration::from_millis(500))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// A worker finished a run of `env`.
    fn done(&self, env: Env) {
        let mut q = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        q.busy[slot(env)] -= 1;
        drop(q);
        self.ready.notify_all();
    }
}

fn run_worker(app: &Arc<App>) {
    let db = match app.store.reader() {
        Ok(c) => c,
        Err(e) => {
            log::error!("run worker could not open a read connection: {e}");
            return;
        }
    };
    while let Some((id, env)) = app.engine.next() {
        if let Err(e) = run(app, &db, &id) {
            log::error!("run {id} could not be completed: {e}");
        }
        app.engine.done(env);
    }
}

/// Claims, runs and finishes one execution.
fn run(app: &App, db: &Connection, id: &str) -> Result<(), StoreError> {
    let claim_id = id.to_string();
    let Some(ex) = app.store.write(move |c| executions::claim(c, &claim_id))? else {
        log::debug!("run {id} is gone or taken; skipped");
        return Ok(());
    };
    let Some((env, user)) = executions::owner(db, &ex.user_id)? else {
        return Ok(());
    };
    let wf = match workflows::get(db, env, &ex.workflow_id, None) {
        Ok(wf) => wf,
        Err(StoreError::NotFound) => return Ok(()),
        Err(e) => return Err(e),
    };
    let began = Instant::now();
    let finish = |status: &'static str, results: Value, error: Option<error_logs::ErrorLog>| {
        let id = id.to_string();
        let done = app
            .store
            .write(move |c| executions::finish(c, &id, status, &results, error.as_ref()));
        if done.is_ok() {
            app.metrics.run(status, began.elapsed().as_secs_f64());
        }
        done
    };
    if user.disabled || !wf.active {
        let reason = if user.disabled {
            "the user is disabled"
        } else {
            "the workflow is not active"
        };
        finish(
            executions::CANCELLED,
            json!([{ "status": "cancelled", "reason": reason }]),
            None,
        )?;
        return Ok(());
    }
    let mut results = Vec::with_capacity(wf.blocks.len());
    let mut failure = None;
    for block in &wf.blocks {
        let started = ids::now_ms();
        let clock = Instant::now();
        let outcome = match block.kind.as_str() {
            "http" => run_http(app, db, env, &wf, block, &ex.inputs),
            "fail" => Err(block.message.clone().unwrap_or_else(|| "Workflow failed".into())),
            other => Err(format!("Error: unknown block type {other}")),
        };
        let mut result = json!({
            "blockId": block.id,
            "name": block.name,
            "type": block.kind,
            "startedAt": ids::rfc3339(started),
            "stoppedAt": ids::rfc3339(ids::now_ms()),
            "durationMs": clock.elapsed().as_millis() as u64,
        });
        log::debug!(
            "run {id}: block {:?} ({}) {}",
            block.name,
            block.kind,
            if outcome.is_ok() { "succeeded" } else { "failed" }
        );
        match outcome {
            Ok(output) => {
                result["status"] = "success".into();
                result["output"] = output;
                results.push(result);
            }
            Err(message) => {
                result["status"] = "failed".into();
                result["error"] = message.clone().into();
                results.push(result);
                failure = Some((block, message));
                break;
            }
        }
    }
    let error =
        failure.map(|(b, message)| error_logs::new_log(env, &user.id, &wf.id, id, &b.id, &b.kind, &b.name, &message));
    let (status, wrote_error) = match error {
        Some(_) => (executions::FAILED, true),
        None => (executions::SUCCEEDED, false),
    };
    finish(status, Value::Array(results), error)?;
    if wrote_error {
        // The error log's deliveries committed with it: send them now, not at the next poll.
        app.delivery.wake();
    }
    Ok(())
}

/// Runs an `http` block: fills placeholders, adds the user's credential, sends, and judges the
/// reply. The error texts follow the peers' (`Error: Request failed with status code N`).
// `ureq::Error` is large by ureq's design; it lives only for the length of one call.
#[allow(clippy::result_large_err)]
fn run_http(
    app: &App,
    db: &Connection,
    env: Env,
    wf: &workflows::Workflow,
    block: &Block,
    inputs: &Value,
) -> Result<Value, String> {
    let data = inputs;
    let missing = |path: String| format!("Error: the run's input has no {path}");
    // Placeholder values are percent-encoded so data cannot change the URL's shape (and the
    // host never comes from data: see `workflow`).
    let template = block.url.as_deref().unwrap_or("").trim();
    let url = workflow::render(template, data, true).map_err(missing)?;
    let method = block.method.as_deref().unwrap_or("GET");
    let timeout = block.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    let mut url = app
        .outbound
        .policy(env)
        .check_url(&url)
        .map_err(|e| format!("Error: the block's URL is refused: {e}"))?;
    // A fragment never goes on the wire: the URL signed is the URL the receiver is sent.
    url.set_fragment(None);
    let mut rq = app
        .outbound
        .blocks(env)
        .request_url(method, &url)
        .timeout(Duration::from_millis(timeout));
    for (k, v) in &block.headers {
        let value = workflow::render(v, data, false).map_err(missing)?;
        if !outbound::is_header_value(&value) {
            return Err(format!("Error: header {k} is not visible ASCII once filled in"));
        }
        rq = rq.set(k, &value);
    }
    let has_type = block.headers.keys().any(|k| k.eq_ignore_ascii_case("content-type"));
    // The exact bytes sent, which `X-Alloy-Signature` covers; none for a block without a body.
    let body = match &block.body {
        None => None,
        Some(Value::String(s)) => {
            let text = workflow::render(s, data, false).map_err(missing)?;
            if !has_type {
                rq = rq.set("Content-Type", "text/plain; charset=utf-8");
            }
            Some(text.into_bytes())
        }
        Some(b) => {
            let value = workflow::render_json(b, data).map_err(missing)?;
            if !has_type {
                rq = rq.set("Content-Type", "application/json");
            }
            // As JavaScript writes it: a receiver checks the signature over its own
            // `JSON.stringify` of the parsed body.
            Some(crate::jsjson::to_string(&value).into_bytes())
        }
    };
    let signature = app
        .request_signing
        .sign(
            db,
            &app.store,
            method,
            url.as_str(),
            body.as_deref().unwrap_or_default(),
        )
        .map_err(|e| {
            log::error!("run of workflow {}: the request could not be signed: {e}", wf.id);
            "Error: the request could not be signed".to_string()
        })?;
    let send = |rq: ureq::Request, credential: &Option<Credential>| {
        let rq = match credential {
            Some(c) => rq.set(&c.name, &c.value),
            None => rq,
        };
        // Last, so that neither the block's headers nor a credential can replace it.
        let rq = rq.set(request_signing::HEADER, &signature);
        match &body {
            None => rq.call(),
            Some(b) => rq.send_bytes(b),
        }
    };
    let credential = credential_header(app, db, env, wf, block)?;
    let mut sent = send(rq.clone(), &credential);
    // An OAuth access token the app refuses is refreshed once, and the call made once more.
    if let (Err(ureq::Error::Status(401, _)), Some(Credential { oauth: Some(cid), .. })) = (&sent, &credential) {
        let iid = wf.integration_id.as_deref().unwrap_or_default();
        if let Some(token) = oauth::fresh_token(app, db, env, iid, cid, &wf.user_id, true)? {
            let retried = Credential {
                name: "Authorization".into(),
                value: format!("Bearer {token}"),
                oauth: None,
            };
            sent = send(rq, &Some(retried));
        }
    }
    match sent {
        Ok(resp) => {
            let status = resp.status();
            Ok(json!({ "statusCode": status, "body": read_body(resp) }))
        }
        Err(ureq::Error::Status(code, _)) => Err(format!("Error: Request failed with status code {code}")),
        Err(ureq::Error::Transport(t)) => Err(transport_error(&t, timeout)),
    }
}

fn read_body(resp: ureq::Response) -> Value {
    let mut buf = Vec::new();
    let _ = resp.into_reader().take(MAX_KEPT_BODY).read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// The text of a failed call. Built from the error's kind and its own message, never from
/// the request: ureq's `Display` of a bad header prints the header line, secret and all.
fn transport_error(t: &ureq::Transport, timeout_ms: u64) -> String {
    if t.kind() == ureq::ErrorKind::BadHeader {
        return "Error: a header of the request is not valid (its value is not shown)".into();
    }
    let detail = t.to_string();
    let timed_out = t.kind() == ureq::ErrorKind::Io && detail.to_ascii_lowercase().contains("timed out");
    if timed_out {
        format!("Error: timeout of {timeout_ms}ms exceeded")
    } else {
        format!("Error: {detail}")
    }
}

/// Which of the user's credentials an `http` block sends, if it sends one: the block's own
/// `credentialId`; else, for a block or integration with a credential type, the credential
/// bound at install while it exists, else the user's newest of that type. The one rule, used
/// by the write that queues a run (so a run that cannot get its credential is refused then)
/// and by the worker that runs it. A failure to read is an error, never "no credential".
pub fn credential_for(
    conn: &Connection,
    env: Env,
    wf: &workflows::Workflow,
    block: &Block,
) -> Result<Option<String>, StoreError> {
    let owned = credentials::list(conn, &wf.user_id)?;
    if let Some(cid) = &block.credential_id {
        if owned.iter().any(|c| &c.id == cid) {
            return Ok(Some(cid.clone()));
        }
        return Err(StoreError::Invalid(format!(
            "block {:?} uses credential {cid}, which is not this user's",
            block.name
        )));
    }
    let integration_type = match &wf.integration_id {
        Some(iid) => match integrations::get(conn, env, iid) {
            Ok(i) => i.credential_type,
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    let Some(kind) = block.credential_type.as_deref().or(integration_type.as_deref()) else {
        return Ok(None);
    };
    if let Some(bound) = wf.credential_id.as_ref().filter(|b| owned.iter().any(|c| &c.id == *b)) {
        return Ok(Some(bound.clone()));
    }
    owned
        .iter()
        .rev()
        .find(|c| c.kind == kind)
        .map(|c| Some(c.id.clone()))
        .ok_or_else(|| {
            StoreError::Invalid(format!(
                "block {:?} needs a {kind} credential and the user has none",
                block.name
            ))
        })
}

/// The header a block's credential becomes; `oauth` names a credential whose access token
/// can be refreshed.
struct Credential {
    name: String,
    value: String,
    oauth: Option<String>,
}

/// The header that carries the user's credential for this block, if it uses one. The secret is
/// opened here, inside the run, and nowhere else. It is checked again, without showing the
/// value, for credentials stored before the rules of `handlers::credentials`.
fn credential_header(
    app: &App,
    db: &Connection,
    env: Env,
    wf: &workflows::Workflow,
    block: &Block,
) -> Result<Option<Credential>, String> {
    let Some((name, value, oauth)) = credential_parts(app, db, env, wf, block)? else {
        return Ok(None);
    };
    if outbound::is_reserved_header(&name) || !outbound::is_header_name(&name) || !outbound::is_header_value(&value) {
        return Err(format!(
            "Error: the credential's header {name:?} cannot be sent (its value is not shown)"
        ));
    }
    Ok(Some(Credential { name, value, oauth }))
}

type Parts = (String, String, Option<String>);

fn credential_parts(
    app: &App,
    db: &Connection,
    env: Env,
    wf: &workflows::Workflow,
    block: &Block,
) -> Result<Option<Parts>, String> {
    let unreadable = |e: StoreError| match e {
        StoreError::Invalid(m) => format!("Error: {m}"),
        e => {
            log::error!("the credential of block {:?} could not be read: {e}", block.name);
            "Error: the block's credential could not be read".to_string()
        }
    };
    let Some(credential_id) = credential_for(db, env, wf, block).map_err(unreadable)? else {
        return Ok(None);
    };
    let plain = credentials::open_data(db, &app.store.secrets, &credential_id, &wf.user_id).map_err(|e| match e {
        StoreError::NotFound => format!("Error: credential {credential_id} not found for this user"),
        e => {
            log::error!("credential {credential_id} could not be opened: {e}");
            format!("Error: credential {credential_id} could not be opened")
        }
    })?;
    let data: Value = serde_json::from_slice(&plain).unwrap_or(Value::Null);
    let text = |k: &str| data.get(k).and_then(Value::as_str).map(str::to_string);
    if let (Some(field), Some(value)) = (text("fieldName"), text("value")) {
        return Ok(Some((field, value, None)));
    }
    if let (Some(_), Some(iid)) = (text("accessToken"), &wf.integration_id) {
        if let Some(token) = oauth::fresh_token(app, db, env, iid, &credential_id, &wf.user_id, false)? {
            return Ok(Some((
                "Authorization".into(),
                format!("Bearer {token}"),
                Some(credential_id),
            )));
        }
    }
    if let Some(token) = text("token").or_else(|| text("apiKey")).or_else(|| text("accessToken")) {
        return Ok(Some(("Authorization".into(), format!("Bearer {token}"), None)));
    }
    if let (Some(user), Some(pass)) = (text("username"), text("password")) {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        return Ok(Some(("Authorization".into(), format!("Basic {basic}"), None)));
    }
    Err(format!(
        "Error: credential {credential_id} has no usable field (fieldName and value, token, apiKey, accessToken, or username and password)"
    ))
}
