//! Error logs: one per failed block, kept until the user's logs are erased.

use super::{Env, Result};
use crate::ids::{self, rfc3339};
use rusqlite::{params, Connection, Row};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorLog {
    pub id: String,
    pub env: Env,
    pub user_id: String,
    pub workflow_id: String,
    pub execution_id: String,
    pub block_id: String,
    pub block_type: String,
    pub block_name: String,
    pub error: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ErrorLog {
    /// The error log document: the same JSON in the API, the webhook and EventBridge.
    pub fn document(&self) -> Value {
        serde_json::to_value(self.view()).unwrap_or_default()
    }

    /// The document, serialized straight from the log: a page of `/logs` is written without
    /// building a map per log, which cost more than reading the page.
    pub fn view(&self) -> Document<'_> {
        Document {
            v: 0,
            id: &self.id,
            block_id: &self.block_id,
            block_name: &self.block_name,
            block_type: &self.block_type,
            created_at: rfc3339(self.created_at),
            error: &self.error,
            execution_id: &self.execution_id,
            updated_at: rfc3339(self.updated_at),
            user_id: &self.user_id,
            workflow_id: &self.workflow_id,
        }
    }

    /// This log's value in a [`SORTABLE`] column.
    pub fn sort_value(&self, column: &str) -> SortValue {
        match column {
            "created_at" => SortValue::Number(self.created_at),
            "updated_at" => SortValue::Number(self.updated_at),
            "workflow_id" => SortValue::Text(self.workflow_id.clone()),
            "user_id" => SortValue::Text(self.user_id.clone()),
            "block_type" => SortValue::Text(self.block_type.clone()),
            _ => SortValue::Text(self.block_name.clone()),
        }
    }
}

/// The error log document's fields, in the order a JSON map sorts them, so that it writes the
/// same bytes as [`ErrorLog::document`].
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Document<'a> {
    #[serde(rename = "__v")]
    v: u8,
    #[serde(rename = "_id")]
    id: &'a str,
    block_id: &'a str,
    block_name: &'a str,
    block_type: &'a str,
    created_at: String,
    error: &'a str,
    execution_id: &'a str,
    updated_at: String,
    user_id: &'a str,
    workflow_id: &'a str,
}

const COLUMNS: &str =
    "id, env, user_id, workflow_id, execution_id, block_id, block_type, block_name, error, created_at, updated_at";

fn from_row(r: &Row) -> rusqlite::Result<ErrorLog> {
    Ok(ErrorLog {
        id: r.get(0)?,
        env: Env::parse(&r.get::<_, String>(1)?).unwrap_or(Env::Development),
        user_id: r.get(2)?,
        workflow_id: r.get(3)?,
        execution_id: r.get(4)?,
        block_id: r.get(5)?,
        block_type: r.get(6)?,
        block_name: r.get(7)?,
        error: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
    })
}

/// Writes an error log; the caller is inside the transaction that fails the execution.
pub fn insert(conn: &Connection, log: &ErrorLog) -> Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO error_logs ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    ))?
    .execute(params![
        log.id,
        log.env.as_str(),
        log.user_id,
        log.workflow_id,
        log.execution_id,
        log.block_id,
        log.block_type,
        log.block_name,
        log.error,
        log.created_at,
        log.updated_at
    ])?;
    Ok(())
}

/// A new error log with a fresh id and times.
#[allow(clippy::too_many_arguments)]
pub fn new_log(
    env: Env,
    user_id: &str,
    workflow_id: &str,
    execution_id: &str,
    block_id: &str,
    block_type: &str,
    block_name: &str,
    error: &str,
) -> ErrorLog {
    let now = ids::now_ms();
    ErrorLog {
        id: ids::object_id(),
        env,
        user_id: user_id.into(),
        workflow_id: workflow_id.into(),
        execution_id: execution_id.into(),
        block_id: block_id.into(),
        block_type: block_type.into(),
        block_name: block_name.into(),
        error: error.into(),
        created_at: now,
        updated_at: now,
    }
}

/// The fields `GET /logs` may sort by, and their columns.
pub const SORTABLE: &[(&str, &str)] = &[
    ("createdAt", "created_at"),
    ("updatedAt", "updated_at"),
    ("workflowId", "workflow_id"),
    ("userId", "user_id"),
    ("blockType", "block_type"),
    ("blockName", "block_name"),
];

/// A query over error logs.
#[derive(Debug)]
pub struct Query {
    pub env: Env,
    pub workflow_id: Option<String>,
    pub user_id: Option<String>,
    pub block_type: Option<String>,
    pub execution_id: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// A column from [`SORTABLE`].
    pub sort_column: &'static str,
    pub descending: bool,
    pub skip: i64,
    /// Only logs after this one in the order asked: its sort value and id (a page's last).
    pub after: Option<(SortValue, String)>,
    pub limit: i64,
}

/// A value of a [`SORTABLE`] column.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum SortValue {
    Number(i64),
    Text(String),
}

impl rusqlite::ToSql for SortValue {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            SortValue::Number(n) => n.to_sql(),
            SortValue::Text(t) => t.to_sql(),
        }
    }
}

/// Whether a column of [`SORTABLE`] holds numbers (the times) or text.
pub fn is_numeric_column(column: &str) -> bool {
    matches!(column, "created_at" | "updated_at")
}

/// One page of matching logs, and how many match in all.
///
/// The statement names only the filters given, so that SQLite picks the index that serves them
/// (`(env, user_id, created_at, id)`, `(workflow_id, created_at, id)`, `(env, created_at, id)`)
/// and reads a page in its order. An environment's total is kept in `error_log_counts`, one
/// user's or one workflow's in `error_log_tallies`; other filters are counted.
pub fn query(conn: &Connection, q: &Query) -> Result<(Vec<ErrorLog>, i64)> {
    let env = q.env.as_str();
    let mut terms = vec!["env = ?1".to_string()];
    let mut values: Vec<&dyn rusqlite::ToSql> = vec![&env];
    let filters: [(&str, Option<&dyn rusqlite::ToSql>); 6] = [
        ("workflow_id = ", q.workflow_id.as_ref().map(|v| v as _)),
        ("user_id = ", q.user_id.as_ref().map(|v| v as _)),
        ("block_type = ", q.block_type.as_ref().map(|v| v as _)),
        ("execution_id = ", q.execution_id.as_ref().map(|v| v as _)),
        ("created_at >= ", q.from_ms.as_ref().map(|v| v as _)),
        ("created_at <= ", q.to_ms.as_ref().map(|v| v as _)),
    ];
    for (term, value) in filters {
        if let Some(value) = value {
            values.push(value);
            terms.push(format!("{term}?{}", values.len()));
        }
    }
    let mut filter = terms.join(" AND ");
    // One user's or one workflow's total is kept by triggers, as an environment's is.
    let tally = match (terms.len(), &q.user_id, &q.workflow_id) {
        (2, Some(user), None) => Some(("user", user)),
        (2, None, Some(workflow)) => Some(("workflow", workflow)),
        _ => None,
    };
    let total: i64 = if terms.len() == 1 {
        conn.prepare_cached("SELECT coalesce((SELECT n FROM error_log_counts WHERE env = ?1), 0)")?
            .query_row([env], |r| r.get(0))?
    } else if let Some((kind, key)) = tally {
        conn.prepare_cached(
            "SELECT coalesce((SELECT n FROM error_log_tallies WHERE env = ?1 AND kind = ?2 AND key = ?3), 0)",
        )?
        .query_row([env, kind, key.as_str()], |r| r.get(0))?
    } else {
        conn.prepare_cached(&format!("SELECT count(*) FROM error_logs WHERE {filter}"))?
            .query_row(&values[..], |r| r.get(0))?
    };
    // The cursor narrows the page, never the total, so it is added after the count.
    if let Some((value, id)) = &q.after {
        values.push(value);
        values.push(id);
        let op = if q.descending { "<" } else { ">" };
        filter.push_str(&format!(
            " AND ({col}, id) {op} (?{}, ?{})",
            values.len() - 1,
            values.len(),
            col = q.sort_column
        ));
    }
    // The sort column comes from SORTABLE, never from input.
    let order = if q.descending { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT {COLUMNS} FROM error_logs WHERE {filter} ORDER BY {col} {order}, id {order} LIMIT ?{} OFFSET ?{}",
        values.len() + 1,
        values.len() + 2,
        col = q.sort_column
    );
    let page: [&dyn rusqlite::ToSql; 2] = [&q.limit, &q.skip];
    let mut st = conn.prepare_cached(&sql)?;
    let rows = st.query_map(rusqlite::params_from_iter(values.iter().chain(page.iter())), from_row)?;
    Ok((rows.collect::<rusqlite::Result<_>>()?, total))
}

/// One error log by id.
pub fn get(conn: &Connection, id: &str) -> Result<Option<ErrorLog>> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM error_logs WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?)
}

/// A workflow's error logs, newest first.
pub fn for_workflow(conn: &Connection, env: Env, workflow_id: &str) -> Result<Vec<ErrorLog>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM error_logs WHERE env = ?1 AND workflow_id = ?2 ORDER BY created_at DESC, id DESC LIMIT 1000"
    ))?;
    let rows = st.query_map(params![env.as_str(), workflow_id], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_writes_each_log_as_the_document_deliveries_send() {
        let mut log = new_log(
            Env::Production,
            "u1",
            "w1",
            "x1",
            "b1",
            "http",
            "Push \"it\"",
            "Error: é",
        );
        log.updated_at += 1;
        // Through a map (sorted keys) and straight from the struct: the same bytes.
        assert_eq!(serde_json::to_string(&log.view()).unwrap(), log.document().to_string());
        let doc = log.document();
        assert_eq!(doc["_id"], log.id.as_str());
        assert_eq!(doc["__v"], 0);
        assert_eq!(doc["blockName"], "Push \"it\"");
        assert_eq!(doc["updatedAt"], rfc3339(log.updated_at).as_str());
        assert_eq!(doc.as_object().unwrap().len(), 11);
    }

    /// Migration 6: a page of one user's or one workflow's logs, with or without a cursor, is
    /// read from its index alone (no table row), in the page's order (no sort).
    #[test]
    fn a_page_by_user_or_by_workflow_reads_only_its_covering_index() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrate(&mut conn).unwrap();
        for (column, index) in [("user_id", "error_logs_user"), ("workflow_id", "error_logs_workflow")] {
            for cursor in ["", " AND (created_at, id) < (?3, ?4)"] {
                let sql = format!(
                    "EXPLAIN QUERY PLAN SELECT {COLUMNS} FROM error_logs WHERE env = ?1 AND {column} = ?2{cursor} \
                     ORDER BY created_at DESC, id DESC LIMIT 50 OFFSET 0"
                );
                let mut st = conn.prepare(&sql).unwrap();
                let n = st.parameter_count();
                let values = ["development", "k", "1", "i"];
                let plan: Vec<String> = st
                    .query_map(rusqlite::params_from_iter(&values[..n]), |r| r.get(3))
                    .unwrap()
                    .collect::<rusqlite::Result<_>>()
                    .unwrap();
                assert!(
                    plan.iter()
                        .any(|p| p.contains(&format!("USING COVERING INDEX {index}"))),
                    "{sql}: {plan:?}"
                );
                assert!(!plan.iter().any(|p| p.contains("TEMP B-TREE")), "{sql}: {plan:?}");
            }
        }
    }
}
