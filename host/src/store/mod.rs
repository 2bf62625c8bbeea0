//! The SQLite store: cards, test cases, executions and results.
//!
//! One connection in WAL mode behind a mutex; statements are short, so they
//! run on the calling task (no thread hop). Execution state lives here, never
//! only in memory: a restarted host answers progress and results for
//! finished executions and re-queues unfinished ones from their stored jobs.

mod schema;

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use uuid::Uuid;

use crate::domain::AssertionSpec;
use crate::domain::{
    Evaluation, Execution, ExecutionStatus, PromptCard, ResultSummary, TestCase, TestConfiguration, TestResult,
    TestStatus,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Fields of a new or updated card.
#[derive(Debug, Clone)]
pub struct CardInput {
    pub title: String,
    pub description: String,
    pub prompt_template: String,
    pub variables: Vec<String>,
}

/// Fields of a new or updated test case.
#[derive(Debug, Clone)]
pub struct TestCaseInput {
    pub name: String,
    pub input_variables: serde_json::Map<String, Value>,
    pub expected_output: Option<String>,
    pub assertions: Vec<AssertionSpec>,
    /// With one, the test passes when its weighted score reaches it.
    pub threshold: Option<f64>,
}

/// A page of cards.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CardPage {
    pub items: Vec<PromptCard>,
    pub total: u64,
    pub page: u64,
    pub limit: u64,
}

#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (creating and migrating) the database at `path`.
    pub fn open(path: &Path) -> StoreResult<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Corrupt(format!("creating {}: {e}", parent.display())))?;
        }
        Self::init(Connection::open(path)?)
    }

    /// A private in-memory database (for `cardrun run` and tests).
    pub fn in_memory() -> StoreResult<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> StoreResult<Self> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL in WAL mode: durable across process crashes, may lose the
        // last transactions on power loss; results are idempotent anyway.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(64);
        schema::migrate(&conn)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut conn)
    }

    // ---- cards -------------------------------------------------------

    pub fn create_card(&self, card: &CardInput) -> StoreResult<PromptCard> {
        let now = Utc::now();
        let id = self.with(|c| {
            exec(c,
                "INSERT INTO prompt_cards (title, description, prompt_template, variables, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![card.title, card.description, card.prompt_template, serde_json::to_string(&card.variables)?, now],
            )?;
            Ok(c.last_insert_rowid())
        })?;
        self.card(id)?.ok_or_else(|| StoreError::Corrupt("inserted card vanished".into()))
    }

    pub fn update_card(&self, id: i64, card: &CardInput) -> StoreResult<Option<PromptCard>> {
        let changed = self.with(|c| {
            Ok(exec(c,
                "UPDATE prompt_cards SET title = ?2, description = ?3, prompt_template = ?4, variables = ?5, updated_at = ?6 WHERE id = ?1",
                params![id, card.title, card.description, card.prompt_template, serde_json::to_string(&card.variables)?, Utc::now()],
            )?)
        })?;
        if changed == 0 { Ok(None) } else { self.card(id) }
    }

    pub fn delete_card(&self, id: i64) -> StoreResult<bool> {
        self.with(|c| Ok(exec(c, "DELETE FROM prompt_cards WHERE id = ?1", [id])? > 0))
    }

    pub fn card(&self, id: i64) -> StoreResult<Option<PromptCard>> {
        self.with(|c| {
            row(c,
                "SELECT id, title, description, prompt_template, variables, created_at, updated_at FROM prompt_cards WHERE id = ?1",
                [id],
                card_row,
            )
            .optional()?
            .transpose()
        })
    }

    /// Cards whose title or description contains `search`, newest first.
    pub fn list_cards(&self, search: Option<&str>, page: u64, limit: u64) -> StoreResult<CardPage> {
        let pattern =
            format!("%{}%", search.unwrap_or("").replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        self.with(|c| {
            let total: u64 = row(c,
                "SELECT COUNT(*) FROM prompt_cards WHERE title LIKE ?1 ESCAPE '\\' OR description LIKE ?1 ESCAPE '\\'",
                [&pattern],
                |r| r.get(0),
            )?;
            let mut stmt = c.prepare_cached(
                "SELECT id, title, description, prompt_template, variables, created_at, updated_at FROM prompt_cards
                 WHERE title LIKE ?1 ESCAPE '\\' OR description LIKE ?1 ESCAPE '\\' ORDER BY id DESC LIMIT ?2 OFFSET ?3",
            )?;
            let items = stmt
                .query_map(params![pattern, limit, (page.saturating_sub(1)) * limit], card_row)?
                .map(|r| r.map_err(StoreError::from).and_then(|x| x))
                .collect::<StoreResult<Vec<_>>>()?;
            Ok(CardPage { items, total, page, limit })
        })
    }

    /// Imports a card and its test cases in one transaction. A card with
    /// the same title (the oldest, if several) is updated rather than
    /// duplicated: its test cases are matched by name, in order, and keep
    /// their ids; cases the import no longer has are deleted, new ones are
    /// added. Returns the card, its test case ids in import order, and
    /// whether it existed.
    pub fn import_card(&self, card: &CardInput, cases: &[TestCaseInput]) -> StoreResult<(PromptCard, Vec<i64>, bool)> {
        let now = Utc::now();
        let variables = serde_json::to_string(&card.variables)?;
        let (card_id, ids, existed) = self.with(|c| {
            let tx = c.transaction()?;
            let existing: Option<i64> =
                row(&tx, "SELECT id FROM prompt_cards WHERE title = ?1 ORDER BY id LIMIT 1", [&card.title], |r| r.get(0))
                    .optional()?;
            let card_id = match existing {
                Some(id) => {
                    exec(&tx,
                        "UPDATE prompt_cards SET description = ?2, prompt_template = ?3, variables = ?4, updated_at = ?5 WHERE id = ?1",
                        params![id, card.description, card.prompt_template, variables, now],
                    )?;
                    id
                }
                None => {
                    exec(&tx,
                        "INSERT INTO prompt_cards (title, description, prompt_template, variables, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                        params![card.title, card.description, card.prompt_template, variables, now],
                    )?;
                    tx.last_insert_rowid()
                }
            };
            // Existing cases by name, oldest first, each matched once.
            let mut old: Vec<(i64, String)> = {
                let mut stmt = tx.prepare_cached("SELECT id, name FROM test_cases WHERE prompt_card_id = ?1 ORDER BY id")?;
                let rows = stmt.query_map([card_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut ids = Vec::with_capacity(cases.len());
            for tc in cases {
                let inputs = Value::Object(tc.input_variables.clone()).to_string();
                let assertions = serde_json::to_string(&tc.assertions)?;
                match old.iter().position(|(_, name)| *name == tc.name) {
                    Some(i) => {
                        let (id, _) = old.remove(i);
                        exec(&tx,
                            "UPDATE test_cases SET input_variables = ?2, expected_output = ?3, assertions = ?4, threshold = ?5 WHERE id = ?1",
                            params![id, inputs, tc.expected_output, assertions, tc.threshold],
                        )?;
                        ids.push(id);
                    }
                    None => {
                        exec(&tx,
                            "INSERT INTO test_cases (prompt_card_id, name, input_variables, expected_output, assertions, created_at, threshold) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                            params![card_id, tc.name, inputs, tc.expected_output, assertions, now, tc.threshold],
                        )?;
                        ids.push(tx.last_insert_rowid());
                    }
                }
            }
            for (id, _) in old {
                exec(&tx, "DELETE FROM test_cases WHERE id = ?1", [id])?;
            }
            tx.commit()?;
            Ok((card_id, ids, existing.is_some()))
        })?;
        let card = self.card(card_id)?.ok_or_else(|| StoreError::Corrupt("imported card vanished".into()))?;
        Ok((card, ids, existed))
    }

    // ---- test cases --------------------------------------------------

    pub fn create_test_case(&self, card_id: i64, tc: &TestCaseInput) -> StoreResult<TestCase> {
        let id = self.with(|c| {
            exec(c,
                "INSERT INTO test_cases (prompt_card_id, name, input_variables, expected_output, assertions, created_at, threshold) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![card_id, tc.name, Value::Object(tc.input_variables.clone()).to_string(), tc.expected_output, serde_json::to_string(&tc.assertions)?, Utc::now(), tc.threshold],
            )?;
            Ok(c.last_insert_rowid())
        })?;
        self.test_case(id)?.ok_or_else(|| StoreError::Corrupt("inserted test case vanished".into()))
    }

    pub fn update_test_case(&self, id: i64, tc: &TestCaseInput) -> StoreResult<Option<TestCase>> {
        let changed = self.with(|c| {
            Ok(exec(c,
                "UPDATE test_cases SET name = ?2, input_variables = ?3, expected_output = ?4, assertions = ?5, threshold = ?6 WHERE id = ?1",
                params![id, tc.name, Value::Object(tc.input_variables.clone()).to_string(), tc.expected_output, serde_json::to_string(&tc.assertions)?, tc.threshold],
            )?)
        })?;
        if changed == 0 { Ok(None) } else { self.test_case(id) }
    }

    pub fn delete_test_case(&self, id: i64) -> StoreResult<bool> {
        self.with(|c| Ok(exec(c, "DELETE FROM test_cases WHERE id = ?1", [id])? > 0))
    }

    pub fn test_case(&self, id: i64) -> StoreResult<Option<TestCase>> {
        self.with(|c| {
            row(c,
                "SELECT id, prompt_card_id, name, input_variables, expected_output, assertions, created_at, threshold FROM test_cases WHERE id = ?1",
                [id],
                test_case_row,
            )
            .optional()?
            .transpose()
        })
    }

    pub fn test_cases_of(&self, card_id: i64) -> StoreResult<Vec<TestCase>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, prompt_card_id, name, input_variables, expected_output, assertions, created_at, threshold FROM test_cases WHERE prompt_card_id = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([card_id], test_case_row)?;
            rows.map(|r| r.map_err(StoreError::from).and_then(|x| x)).collect()
        })
    }

    // ---- evaluations -------------------------------------------------

    pub fn insert_evaluation(&self, e: &Evaluation) -> StoreResult<()> {
        self.with(|c| {
            exec(
                c,
                "INSERT INTO evaluations (evaluation_id, description, pairs, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![e.evaluation_id.to_string(), e.description, serde_json::to_string(&e.pairs)?, e.created_at],
            )?;
            Ok(())
        })
    }

    pub fn evaluation(&self, id: Uuid) -> StoreResult<Option<Evaluation>> {
        self.with(|c| {
            let found = c
                .query_row(
                    "SELECT description, pairs, created_at FROM evaluations WHERE evaluation_id = ?1",
                    [id.to_string()],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, DateTime<Utc>>(2)?)),
                )
                .optional()?;
            found
                .map(|(description, pairs, created_at)| {
                    Ok(Evaluation { evaluation_id: id, description, pairs: serde_json::from_str(&pairs)?, created_at })
                })
                .transpose()
        })
    }

    // ---- executions --------------------------------------------------

    /// Stores a new execution and its jobs, `(test case id, job)` in queue
    /// order, in one transaction. Each job is kept as JSON until the
    /// execution finishes, for [`Store::unfinished_executions`].
    pub fn insert_execution<J: serde::Serialize>(
        &self,
        e: &Execution,
        jobs: impl IntoIterator<Item = (i64, J)>,
    ) -> StoreResult<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            exec(&tx,
                "INSERT INTO executions (execution_id, prompt_card_id, test_case_ids, model, configuration, priority, status, created_at, jobs)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, '[]')",
                params![
                    e.execution_id.to_string(), e.prompt_card_id, serde_json::to_string(&e.test_case_ids)?, e.model,
                    serde_json::to_string(&e.configuration)?, e.priority, e.status.as_str(), e.created_at
                ],
            )?;
            {
                let id = e.execution_id.to_string();
                let mut insert = tx
                    .prepare_cached("INSERT INTO execution_jobs (execution_id, test_case_id, job) VALUES (?1, ?2, ?3)")?;
                for (test_case_id, job) in jobs {
                    insert.execute(params![id, test_case_id, serde_json::to_string(&job)?])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Moves an execution to `status`, stamping start/end times; a finished
    /// execution is never moved again (returns false then). Finishing it
    /// deletes its stored jobs in the same transaction.
    pub fn set_execution_status(&self, id: Uuid, status: ExecutionStatus) -> StoreResult<bool> {
        let now = Utc::now();
        self.with(|c| {
            let sql = match status {
                ExecutionStatus::Running => "UPDATE executions SET status = ?2, started_at = COALESCE(started_at, ?3) WHERE execution_id = ?1 AND status IN ('queued', 'running')",
                ExecutionStatus::Queued => "UPDATE executions SET status = ?2 WHERE execution_id = ?1 AND status IN ('queued', 'running') AND ?3 IS NOT NULL",
                _ => "UPDATE executions SET status = ?2, completed_at = ?3 WHERE execution_id = ?1 AND status IN ('queued', 'running')",
            };
            let tx = c.transaction()?;
            let moved = exec(&tx, sql, params![id.to_string(), status.as_str(), now])? > 0;
            if moved && status.is_finished() {
                exec(&tx, "DELETE FROM execution_jobs WHERE execution_id = ?1", [id.to_string()])?;
            }
            tx.commit()?;
            Ok(moved)
        })
    }

    pub fn execution(&self, id: Uuid) -> StoreResult<Option<Execution>> {
        self.with(|c| {
            row(c, &format!("{EXECUTION_SELECT} WHERE execution_id = ?1"), [id.to_string()], execution_row)
                .optional()?
                .transpose()
        })
    }

    /// Executions still queued or running, oldest first, each with its
    /// stored jobs (JSON, in queue order).
    pub fn unfinished_executions(&self) -> StoreResult<Vec<(Execution, Vec<String>)>> {
        let executions = self.executions_with_status(&[ExecutionStatus::Queued, ExecutionStatus::Running])?;
        self.with(|c| {
            let mut stmt = c.prepare_cached("SELECT job FROM execution_jobs WHERE execution_id = ?1 ORDER BY rowid")?;
            executions
                .into_iter()
                .map(|e| {
                    let jobs = stmt.query_map([e.execution_id.to_string()], |r| r.get(0))?;
                    Ok((e, jobs.collect::<Result<Vec<String>, _>>()?))
                })
                .collect()
        })
    }

    pub fn executions_with_status(&self, statuses: &[ExecutionStatus]) -> StoreResult<Vec<Execution>> {
        let list: Vec<String> = statuses.iter().map(|s| format!("'{}'", s.as_str())).collect();
        self.with(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "{EXECUTION_SELECT} WHERE status IN ({}) ORDER BY created_at",
                list.join(",")
            ))?;
            let rows = stmt.query_map([], execution_row)?;
            rows.map(|r| r.map_err(StoreError::from).and_then(|x| x)).collect()
        })
    }

    /// Executions newest first, `limit` of them after skipping `offset`.
    pub fn recent_executions(&self, limit: u64, offset: u64) -> StoreResult<Vec<Execution>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "{EXECUTION_SELECT} ORDER BY created_at DESC, rowid DESC LIMIT ?1 OFFSET ?2"
            ))?;
            let rows = stmt.query_map(
                params![limit.min(i64::MAX as u64) as i64, offset.min(i64::MAX as u64) as i64],
                execution_row,
            )?;
            rows.map(|r| r.map_err(StoreError::from).and_then(|x| x)).collect()
        })
    }

    /// How many executions the store holds in each status, for every
    /// status (zero included), in [`ExecutionStatus::ALL`] order.
    pub fn execution_counts(&self) -> StoreResult<Vec<(ExecutionStatus, u64)>> {
        let stored: Vec<(String, u64)> = self.with(|c| {
            let mut stmt = c.prepare_cached("SELECT status, COUNT(*) FROM executions GROUP BY status")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })?;
        Ok(ExecutionStatus::ALL
            .iter()
            .map(|s| (*s, stored.iter().find(|(k, _)| k == s.as_str()).map_or(0, |(_, n)| *n)))
            .collect())
    }

    // ---- plugins -----------------------------------------------------

    /// Keeps an uploaded plugin (keyed by content hash). Uploading the same
    /// bytes again makes it the newest, as it is in the running sandbox.
    pub fn put_plugin(&self, hash: &str, name: &str, bytes: &[u8]) -> StoreResult<()> {
        self.with(|c| {
            exec(
                c,
                "INSERT INTO plugins (hash, name, bytes, uploaded_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (hash) DO UPDATE SET uploaded_at = excluded.uploaded_at",
                params![hash, name, bytes, Utc::now()],
            )?;
            Ok(())
        })
    }

    /// Keeps `bytes` as the only upload of plugin `name` (a replacement);
    /// returns the hashes it replaced.
    pub fn replace_plugin(&self, hash: &str, name: &str, bytes: &[u8]) -> StoreResult<Vec<String>> {
        let replaced = self.delete_plugin(name)?;
        self.put_plugin(hash, name, bytes)?;
        Ok(replaced.into_iter().filter(|h| h != hash).collect())
    }

    /// Forgets every upload of plugin `name`; returns their hashes.
    pub fn delete_plugin(&self, name: &str) -> StoreResult<Vec<String>> {
        self.with(|c| {
            let tx = c.transaction()?;
            let hashes: Vec<String> = {
                let mut stmt = tx.prepare_cached("SELECT hash FROM plugins WHERE name = ?1")?;
                let rows = stmt.query_map([name], |r| r.get(0))?;
                rows.collect::<Result<_, _>>()?
            };
            exec(&tx, "DELETE FROM plugins WHERE name = ?1", [name])?;
            tx.commit()?;
            Ok(hashes)
        })
    }

    /// Every uploaded plugin as `(content hash, bytes)`, oldest upload first.
    pub fn plugin_blobs(&self) -> StoreResult<Vec<(String, Vec<u8>)>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached("SELECT hash, bytes FROM plugins ORDER BY uploaded_at, rowid")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// Every uploaded plugin as `(name, bytes)`, oldest upload first.
    pub fn plugins(&self) -> StoreResult<Vec<(String, Vec<u8>)>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached("SELECT name, bytes FROM plugins ORDER BY uploaded_at, rowid")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    // ---- results -----------------------------------------------------

    /// Writes many final results in one transaction, each replacing any
    /// earlier result of its test (idempotent by execution and test case).
    pub fn put_results(&self, results: &[TestResult]) -> StoreResult<()> {
        if results.is_empty() {
            return Ok(());
        }
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut upsert = tx.prepare_cached(
                    "INSERT INTO test_results (execution_id, test_case_id, status, payload) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (execution_id, test_case_id) DO UPDATE SET status = excluded.status, payload = excluded.payload",
                )?;
                for r in results {
                    upsert.execute(params![
                        r.execution_id.to_string(),
                        r.test_case_id,
                        r.status.as_str(),
                        serde_json::to_string(r)?
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    pub fn results(&self, execution_id: Uuid) -> StoreResult<Vec<TestResult>> {
        self.with(|c| {
            let mut stmt =
                c.prepare_cached("SELECT payload FROM test_results WHERE execution_id = ?1 ORDER BY rowid")?;
            let rows = stmt.query_map([execution_id.to_string()], |r| r.get::<_, String>(0))?;
            rows.map(|p| Ok(serde_json::from_str(&p?)?)).collect()
        })
    }

    /// The summary of one execution's stored results, aggregated in SQL
    /// (nothing but counts and sums is read).
    pub fn result_summary(&self, execution_id: Uuid) -> StoreResult<ResultSummary> {
        let groups: Vec<(String, usize, i64, i64)> = self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT status, COUNT(*),
                        COALESCE(SUM(json_extract(payload, '$.execution_time_ms')), 0),
                        COALESCE(SUM(json_extract(payload, '$.flaky')), 0)
                 FROM test_results WHERE execution_id = ?1 GROUP BY status",
            )?;
            let rows =
                stmt.query_map([execution_id.to_string()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })?;
        let mut summary = ResultSummary::default();
        for (status, tests, time_ms, flaky) in groups {
            let status = serde_json::from_value(Value::String(status.clone()))
                .map_err(|_| StoreError::Corrupt(format!("status {status}")))?;
            summary.add_group(status, tests, u64::try_from(time_ms).unwrap_or(0), usize::try_from(flaky).unwrap_or(0));
        }
        Ok(summary)
    }

    /// `(status, count)` of the results of one execution.
    pub fn result_counts(&self, execution_id: Uuid) -> StoreResult<Vec<(TestStatus, usize)>> {
        self.with(|c| {
            let mut stmt =
                c.prepare_cached("SELECT status, COUNT(*) FROM test_results WHERE execution_id = ?1 GROUP BY status")?;
            let rows =
                stmt.query_map([execution_id.to_string()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, usize>(1)?)))?;
            rows.map(|r| {
                let (s, n) = r?;
                let status = serde_json::from_value(Value::String(s.clone()))
                    .map_err(|_| StoreError::Corrupt(format!("status {s}")))?;
                Ok((status, n))
            })
            .collect()
        })
    }
}

/// Runs a statement through the connection's prepared-statement cache, so
/// hot statements (result writes, progress reads) are parsed once.
fn exec(c: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    c.prepare_cached(sql)?.execute(params)
}

/// `query_row` through the prepared-statement cache.
fn row<T>(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    c.prepare_cached(sql)?.query_row(params, f)
}

const EXECUTION_SELECT: &str = "SELECT execution_id, prompt_card_id, test_case_ids, model, configuration, priority, status, created_at, started_at, completed_at FROM executions";

fn card_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoreResult<PromptCard>> {
    let variables: String = row.get(4)?;
    Ok(serde_json::from_str(&variables).map_err(StoreError::from).map(|variables| PromptCard {
        id: row.get(0).unwrap_or_default(),
        title: row.get(1).unwrap_or_default(),
        description: row.get(2).unwrap_or_default(),
        prompt_template: row.get(3).unwrap_or_default(),
        variables,
        created_at: row.get(5).unwrap_or_default(),
        updated_at: row.get(6).unwrap_or_default(),
    }))
}

fn test_case_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoreResult<TestCase>> {
    let vars: String = row.get(3)?;
    let assertions: String = row.get(5)?;
    let created_at: DateTime<Utc> = row.get(6)?;
    let parsed = (|| -> StoreResult<TestCase> {
        Ok(TestCase {
            id: row.get(0)?,
            prompt_card_id: row.get(1)?,
            name: row.get(2)?,
            input_variables: serde_json::from_str(&vars)?,
            expected_output: row.get(4)?,
            assertions: serde_json::from_str(&assertions)?,
            created_at,
            threshold: row.get(7)?,
        })
    })();
    Ok(parsed)
}

fn execution_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoreResult<Execution>> {
    let id: String = row.get(0)?;
    let ids: String = row.get(2)?;
    let config: String = row.get(4)?;
    let status: String = row.get(6)?;
    let parsed = (|| -> StoreResult<Execution> {
        Ok(Execution {
            execution_id: Uuid::parse_str(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            prompt_card_id: row.get(1)?,
            test_case_ids: serde_json::from_str(&ids)?,
            model: row.get(3)?,
            configuration: serde_json::from_str::<TestConfiguration>(&config)?,
            priority: row.get(5)?,
            status: ExecutionStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("status {status}")))?,
            created_at: row.get(7)?,
            started_at: row.get(8)?,
            completed_at: row.get(9)?,
        })
    })();
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::TestConfiguration;

    fn execution() -> Execution {
        Execution {
            execution_id: Uuid::new_v4(),
            prompt_card_id: 1,
            test_case_ids: vec![3, 1, 2],
            model: "echo:echo".into(),
            configuration: TestConfiguration::default(),
            priority: 5,
            status: ExecutionStatus::Queued,
            created_at: Utc::now(),
            started_at: None,
            completed_at: None,
        }
    }

    fn job_rows(store: &Store) -> i64 {
        store.with(|c| Ok(c.query_row("SELECT COUNT(*) FROM execution_jobs", [], |r| r.get(0))?)).unwrap()
    }

    #[test]
    fn the_aggregated_summary_equals_the_one_computed_from_the_results() {
        let store = Store::in_memory().unwrap();
        let e = execution();
        store.insert_execution(&e, std::iter::empty::<(i64, &Value)>()).unwrap();
        let result = |id: i64, status: TestStatus, ms: u64, flaky: bool| TestResult {
            execution_time_ms: ms,
            flaky,
            ..TestResult::unrun(e.execution_id, id, format!("t{id}"), status, String::new())
        };
        let results = vec![
            result(1, TestStatus::Passed, 10, false),
            result(2, TestStatus::Passed, 30, true),
            result(3, TestStatus::Failed, 5, false),
            result(4, TestStatus::Error, 7, false),
            result(5, TestStatus::Skipped, 0, false),
            result(6, TestStatus::Cancelled, 0, false),
        ];
        store.put_results(&results).unwrap();
        assert_eq!(store.result_summary(e.execution_id).unwrap(), ResultSummary::of(&results));
        assert_eq!(store.result_summary(Uuid::new_v4()).unwrap(), ResultSummary::default());
    }

    #[test]
    fn jobs_are_kept_in_queue_order_until_the_execution_finishes() {
        let store = Store::in_memory().unwrap();
        let e = execution();
        let jobs = [json!({"test_case_id": 3}), json!({"test_case_id": 1}), json!({"test_case_id": 2})];
        store.insert_execution(&e, jobs.iter().map(|j| (j["test_case_id"].as_i64().unwrap(), j))).unwrap();

        store.set_execution_status(e.execution_id, ExecutionStatus::Running).unwrap();
        let unfinished = store.unfinished_executions().unwrap();
        assert_eq!(unfinished.len(), 1);
        assert_eq!(unfinished[0].0.execution_id, e.execution_id);
        let ids: Vec<i64> = unfinished[0]
            .1
            .iter()
            .map(|j| serde_json::from_str::<Value>(j).unwrap()["test_case_id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, [3, 1, 2]);

        assert!(store.set_execution_status(e.execution_id, ExecutionStatus::Completed).unwrap());
        assert!(store.unfinished_executions().unwrap().is_empty());
        assert_eq!(job_rows(&store), 0, "a finished execution's jobs are deleted");
    }

    #[test]
    fn migration_moves_the_jobs_of_unfinished_executions_out_of_the_array() {
        let store = Store::in_memory().unwrap();
        // Back to schema 2, where jobs were one JSON array per execution
        // (undoing migrations 3 to 5).
        store
            .with(|c| {
                c.execute_batch(
                    "DROP TABLE execution_jobs; DROP TABLE evaluations; ALTER TABLE test_cases DROP COLUMN threshold;
                     PRAGMA user_version = 2;",
                )?;
                Ok(())
            })
            .unwrap();
        let (queued, finished) = (execution(), execution());
        for (e, status) in [(&queued, "queued"), (&finished, "completed")] {
            store
                .with(|c| {
                    c.execute(
                        "INSERT INTO executions (execution_id, prompt_card_id, test_case_ids, model, configuration, priority, status, created_at, jobs)
                         VALUES (?1, 1, '[3,1,2]', 'echo:echo', ?2, 5, ?3, ?4, ?5)",
                        params![
                            e.execution_id.to_string(),
                            serde_json::to_string(&e.configuration)?,
                            status,
                            e.created_at,
                            r#"[{"test_case_id":3,"n":"a"},{"test_case_id":1,"n":"b"},{"test_case_id":2,"n":"c"}]"#
                        ],
                    )?;
                    Ok(())
                })
                .unwrap();
        }
        store.with(|c| schema::migrate(c)).unwrap();

        let unfinished = store.unfinished_executions().unwrap();
        assert_eq!(unfinished.len(), 1);
        assert_eq!(unfinished[0].0.execution_id, queued.execution_id);
        let jobs: Vec<Value> = unfinished[0].1.iter().map(|j| serde_json::from_str(j).unwrap()).collect();
        assert_eq!(
            jobs,
            [
                json!({"test_case_id": 3, "n": "a"}),
                json!({"test_case_id": 1, "n": "b"}),
                json!({"test_case_id": 2, "n": "c"})
            ]
        );
        assert_eq!(job_rows(&store), 3, "only the unfinished execution's jobs move");
        let arrays: i64 = store
            .with(|c| Ok(c.query_row("SELECT COUNT(*) FROM executions WHERE jobs <> '[]'", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(arrays, 0);
    }
}
