//! Reading what runs left behind: executions, and error logs per workflow or across them.

use super::{auth, query_number};
use crate::error::ApiError;
use crate::http::{Ctx, Req, Resp};
use crate::ids::{self, rfc3339};
use crate::store::{error_logs, executions, users};
use serde_json::{json, Value};

/// The documented `Execution` object.
pub fn execution_json(e: &executions::Execution) -> Value {
    json!({
        "executionId": e.id,
        "workflowId": e.workflow_id,
        "userId": e.user_id,
        "status": e.status,
        "createdAt": rfc3339(e.created_at),
        "startedAt": e.started_at.map(rfc3339),
        "stoppedAt": e.stopped_at.map(rfc3339),
        "finished": e.finished(),
        "attempts": e.attempts,
        "inputs": e.inputs,
        "results": e.results,
    })
}

fn flag(req: &Req, name: &str) -> Result<bool, ApiError> {
    match req.query(name) {
        None | Some("") | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(_) => Err(ApiError::Unprocessable(format!("{name} must be true or false"))),
    }
}

fn descending(req: &Req, name: &str) -> Result<bool, ApiError> {
    match req.query(name).map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("desc") | Some("-1") => Ok(true),
        Some("asc") | Some("1") => Ok(false),
        Some(_) => Err(ApiError::Unprocessable(format!("{name} must be asc or desc"))),
    }
}

/// `GET /workflows/{workflowId}/logs?userId&page&limit&order&error`
pub fn executions(ctx: &Ctx, req: &Req, workflow_id: &str) -> Result<Resp, ApiError> {
    let caller = auth::caller(ctx)?;
    let (_, wf) = super::workflows::visible(ctx, &caller, workflow_id, req.query("userId"))?;
    let page = query_number(req, "page", 1, 0..=1_000_000)?.max(1);
    let limit = query_number(req, "limit", 10, 1..=30)? as i64;
    let offset = (page as i64 - 1) * limit;
    let list = executions::list(
        &*ctx.db()?,
        &wf.id,
        offset,
        limit,
        descending(req, "order")?,
        flag(req, "error")?,
    )?;
    Ok(Resp::ok(
        &json!({ "data": list.iter().map(execution_json).collect::<Vec<_>>() }),
    ))
}

/// `GET /workflows/{workflowId}/errors?userId`
pub fn workflow_errors(ctx: &Ctx, req: &Req, workflow_id: &str) -> Result<Resp, ApiError> {
    let caller = auth::caller(ctx)?;
    let (env, wf) = super::workflows::visible(ctx, &caller, workflow_id, req.query("userId"))?;
    let logs = error_logs::for_workflow(&*ctx.db()?, env, &wf.id)?;
    Ok(Resp::ok(
        &json!({ "data": logs.iter().map(error_logs::ErrorLog::document).collect::<Vec<_>>() }),
    ))
}

/// A time bound in a filter: RFC 3339 is not parsed here, so epoch milliseconds only.
fn time_bound(v: Option<&Value>, name: &str) -> Result<Option<i64>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| ApiError::Unprocessable(format!("filters.{name} must be epoch milliseconds"))),
    }
}

/// `GET /logs?workflowId&associatedUserId&skip&limit&sortBy&sortOrder&filters&cursor`, where
/// `filters` is a JSON object with any of `workflowId`, `userId`, `blockType`, `executionId`,
/// `from`, `to`. `cursor` (ext) is a page's `nextCursor`: the next page, read from where the
/// last one ended however deep, and unmoved by logs written in between.
pub fn list(ctx: &Ctx, req: &Req) -> Result<Resp, ApiError> {
    let env = auth::key_env(ctx)?;
    let filters: serde_json::Map<String, Value> = match req.query("filters").filter(|f| !f.is_empty()) {
        None => Default::default(),
        Some(f) => match serde_json::from_str(f) {
            Ok(Value::Object(m)) => m,
            _ => return Err(ApiError::BadRequest("filters must be a JSON object".into())),
        },
    };
    let text = |name: &str| -> Result<Option<String>, ApiError> {
        match filters.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::BadRequest(format!("filters.{name} must be a string"))),
        }
    };
    let user_ref = req
        .query("associatedUserId")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or(text("userId")?);
    // A deleted user's logs remain, so an unknown id is taken as it is.
    let user_id = match user_ref {
        None => None,
        Some(r) => match users::find(&*ctx.db()?, env, &r)? {
            Some(u) => Some(u.id),
            None if ids::is_object_id(&r) => Some(r),
            None => return Err(ApiError::NotFound("user not found".into())),
        },
    };
    let sort_by = req.query("sortBy").filter(|s| !s.is_empty()).unwrap_or("createdAt");
    let sort_column = error_logs::SORTABLE
        .iter()
        .find(|(k, _)| *k == sort_by)
        .map(|(_, c)| *c)
        .ok_or_else(|| {
            let names: Vec<&str> = error_logs::SORTABLE.iter().map(|(k, _)| *k).collect();
            ApiError::Unprocessable(format!("sortBy must be one of {}", names.join(", ")))
        })?;
    let limit = query_number(req, "limit", 10, 1..=100)? as i64;
    let skip = query_number(req, "skip", 0, 0..=u32::MAX as u64)? as i64;
    let descending = descending(req, "sortOrder")?;
    let after = match req.query("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(_) if skip > 0 => {
            return Err(ApiError::Unprocessable("give skip or cursor, not both".into()));
        }
        Some(c) => Some(LogCursor::parse(c, sort_by, descending, sort_column)?),
    };
    let by_cursor = after.is_some();
    let q = error_logs::Query {
        env,
        workflow_id: req
            .query("workflowId")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .or(text("workflowId")?),
        user_id,
        block_type: text("blockType")?,
        execution_id: text("executionId")?,
        from_ms: time_bound(filters.get("from"), "from")?,
        to_ms: time_bound(filters.get("to"), "to")?,
        sort_column,
        descending,
        skip,
        after,
        // One more than the page, to know whether another follows.
        limit: limit + 1,
    };
    let (mut logs, total) = error_logs::query(&*ctx.db()?, &q)?;
    let more = logs.len() as i64 > limit;
    logs.truncate(limit as usize);
    let next_cursor = logs.last().filter(|_| more).map(|last| {
        LogCursor {
            sort_by: sort_by.to_string(),
            descending,
            value: last.sort_value(sort_column),
            id: last.id.clone(),
        }
        .encode()
    });
    Ok(Resp::ok(&LogPage {
        last_fetched: rfc3339(ids::now_ms()),
        next_cursor,
        notifications: logs.iter().map(error_logs::ErrorLog::view).collect(),
        pagination: Pagination {
            // A page read by cursor has no number.
            current_page: (!by_cursor).then_some(skip / limit + 1),
            page_size: limit,
            total_items: total,
            total_pages: (total + limit - 1) / limit,
        },
    }))
}

/// The answer of `GET /logs`, written straight from the page's logs.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct LogPage<'a> {
    last_fetched: String,
    next_cursor: Option<String>,
    notifications: Vec<error_logs::Document<'a>>,
    pagination: Pagination,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Pagination {
    current_page: Option<i64>,
    page_size: i64,
    total_items: i64,
    total_pages: i64,
}

/// Where a page of `GET /logs` ended, as the opaque `nextCursor`: base64url of
/// `[sortBy, "asc"|"desc", value, id]`. It is good only for the same sort.
#[derive(Debug)]
struct LogCursor {
    sort_by: String,
    descending: bool,
    value: error_logs::SortValue,
    id: String,
}

impl LogCursor {
    fn order_word(descending: bool) -> &'static str {
        if descending {
            "desc"
        } else {
            "asc"
        }
    }

    fn encode(&self) -> String {
        use base64::Engine;
        let text = json!([
            self.sort_by,
            LogCursor::order_word(self.descending),
            self.value,
            self.id
        ])
        .to_string();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    }

    fn parse(
        text: &str,
        sort_by: &str,
        descending: bool,
        column: &str,
    ) -> Result<(error_logs::SortValue, String), ApiError> {
        use base64::Engine;
        let bad = || ApiError::BadRequest("cursor is not a nextCursor of GET /logs".into());
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| bad())?;
        let (by, order, value, id): (String, String, error_logs::SortValue, String) =
            serde_json::from_slice(&bytes).map_err(|_| bad())?;
        if by != sort_by || order != LogCursor::order_word(descending) {
            return Err(ApiError::Unprocessable(format!(
                "the cursor was made for sortBy={by}&sortOrder={order}; ask with the same sort"
            )));
        }
        let numeric = matches!(value, error_logs::SortValue::Number(_));
        if numeric != error_logs::is_numeric_column(column) {
            return Err(bad());
        }
        Ok((value, id))
    }
}

/// `GET /stats`: the environment at a glance, for the console's overview: counts, and runs and
/// errors per hour over the last 24 hours and per day over the last 30 days (UTC).
pub fn stats(ctx: &Ctx, _req: &Req) -> Result<Resp, ApiError> {
    use crate::store::stats;
    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;
    let env = auth::key_env(ctx)?;
    let now = ctx.app.clock.now_ms();
    let db = ctx.db()?;
    let series = |since: i64, width: i64, n: i64| -> Result<Vec<Value>, ApiError> {
        let (runs, errors) = stats::per_slot(&db, env, since, width)?;
        Ok((0..n)
            .map(|i| {
                let slot = since / width + i;
                json!({
                    "at": rfc3339(slot * width),
                    "runs": runs.get(&slot).copied().unwrap_or(0),
                    "errors": errors.get(&slot).copied().unwrap_or(0),
                })
            })
            .collect())
    };
    let today = now - now.rem_euclid(DAY);
    let counts = stats::counts(&db, env, today)?;
    Ok(Resp::ok(&json!({
        "users": counts.users,
        "activeWorkflows": counts.active_workflows,
        "runsToday": counts.runs_since,
        "errorsToday": counts.errors_since,
        "hourly": series(now - now.rem_euclid(HOUR) - 23 * HOUR, HOUR, 24)?,
        "daily": series(today - 29 * DAY, DAY, 30)?,
    })))
}
