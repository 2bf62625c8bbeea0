//! The SQLite store, the embedded default: one file (or memory) serving one
//! API host.
//!
//! One connection in WAL mode, owned by one thread ([`SqliteStore::call`]
//! sends it work and awaits the answer): a write can wait on a WAL
//! checkpoint's fsync, and the tasks serving clients must not wait behind
//! it. There is no lock to hold across an `.await`.

mod schema;

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::{
    CardInput, CardPage, Imported, JobSource, ResultRow, Store, StoreError, StoreResult, StoredAdapter, StoredPlugin,
    Tenant, TestCaseInput, counts_by_status, like_pattern, summary_of, test_status,
};
use crate::domain::{
    Evaluation, Execution, ExecutionStatus, PromptCard, ResultSummary, TestCase, TestConfiguration, TestResult,
    TestStatus,
};

/// A statement (or a transaction of several) for the SQLite thread.
type Work = Box<dyn FnOnce(&mut Connection) + Send>;

/// Cheap to clone; all clones share one connection on one thread, which
/// stops when the last clone is dropped.
#[derive(Clone)]
pub struct SqliteStore {
    work: std::sync::mpsc::Sender<Work>,
}

impl SqliteStore {
    /// Opens (creating and migrating) the database at `path`. Blocking.
    pub fn open(path: &Path) -> StoreResult<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Config(format!("creating {}: {e}", parent.display())))?;
        }
        Self::init(Connection::open(path)?)
    }

    /// A private in-memory database (for `cardrun run` and tests).
    pub fn in_memory() -> StoreResult<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> StoreResult<Self> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL in WAL mode: durable across process crashes, may lose the
        // last transactions on power loss; results are idempotent anyway.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(64);
        schema::migrate(&conn)?;
        // One thread owns the connection: statements never run on an async
        // worker, need no lock, and run in the order they were sent.
        let (work, queue) = std::sync::mpsc::channel::<Work>();
        std::thread::Builder::new()
            .name("cardrun-sqlite".into())
            .spawn(move || {
                for job in queue {
                    job(&mut conn);
                }
            })
            .map_err(|e| StoreError::Config(format!("starting the SQLite thread: {e}")))?;
        Ok(Self { work })
    }

    /// Runs `f` on the SQLite thread and waits (asynchronously) for it.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Work = Box::new(move |conn| {
            let _ = reply.send(f(conn));
        });
        self.work.send(job).map_err(|_| StoreError::Gone)?;
        answer.await.map_err(|_| StoreError::Gone)?
    }

    /// `f` on the SQLite thread, waited for by blocking (tests only).
    #[cfg(test)]
    fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (reply, answer) = std::sync::mpsc::channel();
        let job: Work = Box::new(move |conn| {
            let _ = reply.send(f(conn));
        });
        self.work.send(job).map_err(|_| StoreError::Gone)?;
        answer.recv().map_err(|_| StoreError::Gone)?
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    // ---- cards -------------------------------------------------------

    async fn create_card(&self, card: &CardInput) -> StoreResult<PromptCard> {
        let card = card.clone();
        let variables = serde_json::to_string(&card.variables)?;
        let filters = card.filters_column()?;
        self.call(move |c| {
            exec(c,
                "INSERT INTO prompt_cards (title, description, prompt_template, variables, created_at, updated_at, tenant_id, filters) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7)",
                params![card.title, card.description, card.prompt_template, variables, Utc::now(), card.tenant_id, filters],
            )?;
            card_by_id(c, c.last_insert_rowid())?.ok_or_else(|| StoreError::Corrupt("inserted card vanished".into()))
        })
        .await
    }

    async fn update_card(&self, id: i64, card: &CardInput) -> StoreResult<Option<PromptCard>> {
        let card = card.clone();
        let variables = serde_json::to_string(&card.variables)?;
        let filters = card.filters_column()?;
        self.call(move |c| {
            let changed = exec(c,
                "UPDATE prompt_cards SET title = ?2, description = ?3, prompt_template = ?4, variables = ?5, updated_at = ?6, filters = ?7 WHERE id = ?1",
                params![id, card.title, card.description, card.prompt_template, variables, Utc::now(), filters],
            )?;
            if changed == 0 { Ok(None) } else { card_by_id(c, id) }
        })
        .await
    }

    async fn delete_card(&self, id: i64) -> StoreResult<bool> {
        self.call(move |c| Ok(exec(c, "DELETE FROM prompt_cards WHERE id = ?1", [id])? > 0)).await
    }

    async fn card(&self, id: i64) -> StoreResult<Option<PromptCard>> {
        self.call(move |c| card_by_id(c, id)).await
    }

    async fn list_cards(
        &self,
        tenant: Option<i64>,
        search: Option<&str>,
        page: u64,
        limit: u64,
    ) -> StoreResult<CardPage> {
        let pattern = like_pattern(search);
        let offset = i64::try_from(page.saturating_sub(1).saturating_mul(limit)).unwrap_or(i64::MAX);
        let sql_limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call(move |c| {
            let total: i64 = row(c,
                "SELECT COUNT(*) FROM prompt_cards WHERE (title LIKE ?1 ESCAPE '\\' OR description LIKE ?1 ESCAPE '\\')
                 AND (?2 IS NULL OR tenant_id = ?2)",
                params![pattern, tenant],
                |r| r.get(0),
            )?;
            let mut stmt = c.prepare_cached(
                "SELECT id, title, description, prompt_template, variables, created_at, updated_at, tenant_id, filters FROM prompt_cards
                 WHERE (title LIKE ?1 ESCAPE '\\' OR description LIKE ?1 ESCAPE '\\') AND (?4 IS NULL OR tenant_id = ?4)
                 ORDER BY id DESC LIMIT ?2 OFFSET ?3",
            )?;
            let items = stmt
                .query_map(params![pattern, sql_limit, offset, tenant], card_row)?
                .map(|r| r.map_err(StoreError::from).and_then(|x| x))
                .collect::<StoreResult<Vec<_>>>()?;
            Ok(CardPage { items, total: u64::try_from(total).unwrap_or(0), page, limit })
        })
        .await
    }

    async fn import_card(&self, card: &CardInput, cases: &[TestCaseInput]) -> StoreResult<Imported> {
        let card = card.clone();
        let variables = serde_json::to_string(&card.variables)?;
        let filters = card.filters_column()?;
        let cases = cases
            .iter()
            .map(|tc| {
                let (inputs, assertions) = tc.json_columns()?;
                Ok((
                    tc.name.clone(),
                    inputs,
                    tc.expected_output.clone(),
                    assertions,
                    tc.threshold,
                    tc.transform.clone(),
                ))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        self.call(move |c| {
            let now = Utc::now();
            let tx = c.transaction()?;
            let existing: Option<i64> =
                row(&tx, "SELECT id FROM prompt_cards WHERE title = ?1 AND tenant_id IS ?2 ORDER BY id LIMIT 1",
                    params![card.title, card.tenant_id], |r| r.get(0))
                    .optional()?;
            let card_id = match existing {
                Some(id) => {
                    exec(&tx,
                        "UPDATE prompt_cards SET description = ?2, prompt_template = ?3, variables = ?4, updated_at = ?5, filters = ?6 WHERE id = ?1",
                        params![id, card.description, card.prompt_template, variables, now, filters],
                    )?;
                    id
                }
                None => {
                    exec(&tx,
                        "INSERT INTO prompt_cards (title, description, prompt_template, variables, created_at, updated_at, tenant_id, filters) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7)",
                        params![card.title, card.description, card.prompt_template, variables, now, card.tenant_id, filters],
                    )?;
                    tx.last_insert_rowid()
                }
            };
            // Existing cases by name, oldest first, each matched once.
            let mut old: HashMap<String, VecDeque<i64>> = HashMap::new();
            {
                let mut stmt = tx.prepare_cached("SELECT id, name FROM test_cases WHERE prompt_card_id = ?1 ORDER BY id")?;
                for r in stmt.query_map([card_id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))? {
                    let (id, name) = r?;
                    old.entry(name).or_default().push_back(id);
                }
            }
            let mut ids = Vec::with_capacity(cases.len());
            for (name, inputs, expected, assertions, threshold, transform) in &cases {
                match old.get_mut(name).and_then(VecDeque::pop_front) {
                    Some(id) => {
                        exec(&tx,
                            "UPDATE test_cases SET input_variables = ?2, expected_output = ?3, assertions = ?4, threshold = ?5, transform = ?6 WHERE id = ?1",
                            params![id, inputs, expected, assertions, threshold, transform],
                        )?;
                        ids.push(id);
                    }
                    None => {
                        exec(&tx,
                            "INSERT INTO test_cases (prompt_card_id, name, input_variables, expected_output, assertions, created_at, threshold, transform) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                            params![card_id, name, inputs, expected, assertions, now, threshold, transform],
                        )?;
                        ids.push(tx.last_insert_rowid());
                    }
                }
            }
            for id in old.into_values().flatten() {
                exec(&tx, "DELETE FROM test_cases WHERE id = ?1", [id])?;
            }
            let stored = card_by_id(&tx, card_id)?.ok_or_else(|| StoreError::Corrupt("imported card vanished".into()))?;
            tx.commit()?;
            Ok(Imported { card: stored, test_case_ids: ids, updated: existing.is_some() })
        })
        .await
    }

    // ---- test cases --------------------------------------------------

    async fn create_test_case(&self, card_id: i64, tc: &TestCaseInput) -> StoreResult<Option<TestCase>> {
        let (name, expected, threshold, transform) =
            (tc.name.clone(), tc.expected_output.clone(), tc.threshold, tc.transform.clone());
        let (inputs, assertions) = tc.json_columns()?;
        self.call(move |c| {
            let tx = c.transaction()?;
            let inserted = exec(&tx,
                "INSERT INTO test_cases (prompt_card_id, name, input_variables, expected_output, assertions, created_at, threshold, transform)
                 SELECT id, ?2, ?3, ?4, ?5, ?6, ?7, ?8 FROM prompt_cards WHERE id = ?1",
                params![card_id, name, inputs, expected, assertions, Utc::now(), threshold, transform],
            )?;
            if inserted == 0 {
                return Ok(None);
            }
            let created = test_case_by_id(&tx, tx.last_insert_rowid())?;
            tx.commit()?;
            Ok(created)
        })
        .await
    }

    async fn update_test_case(&self, id: i64, tc: &TestCaseInput) -> StoreResult<Option<TestCase>> {
        let (name, expected, threshold, transform) =
            (tc.name.clone(), tc.expected_output.clone(), tc.threshold, tc.transform.clone());
        let (inputs, assertions) = tc.json_columns()?;
        self.call(move |c| {
            let changed = exec(c,
                "UPDATE test_cases SET name = ?2, input_variables = ?3, expected_output = ?4, assertions = ?5, threshold = ?6, transform = ?7 WHERE id = ?1",
                params![id, name, inputs, expected, assertions, threshold, transform],
            )?;
            if changed == 0 { Ok(None) } else { test_case_by_id(c, id) }
        })
        .await
    }

    async fn delete_test_case(&self, id: i64) -> StoreResult<bool> {
        self.call(move |c| Ok(exec(c, "DELETE FROM test_cases WHERE id = ?1", [id])? > 0)).await
    }

    async fn test_case(&self, id: i64) -> StoreResult<Option<TestCase>> {
        self.call(move |c| test_case_by_id(c, id)).await
    }

    async fn test_cases_of(&self, card_id: i64) -> StoreResult<Vec<TestCase>> {
        self.call(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, prompt_card_id, name, input_variables, expected_output, assertions, created_at, threshold, transform FROM test_cases WHERE prompt_card_id = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([card_id], test_case_row)?;
            rows.map(|r| r.map_err(StoreError::from).and_then(|x| x)).collect()
        })
        .await
    }

    async fn test_cases_after(&self, card_id: i64, after_id: i64, limit: u32) -> StoreResult<Vec<TestCase>> {
        self.call(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, prompt_card_id, name, input_variables, expected_output, assertions, created_at, threshold, transform FROM test_cases WHERE prompt_card_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![card_id, after_id, limit], test_case_row)?;
            rows.map(|r| r.map_err(StoreError::from).and_then(|x| x)).collect()
        })
        .await
    }

    // ---- evaluations -------------------------------------------------

    async fn insert_evaluation(&self, e: &Evaluation) -> StoreResult<()> {
        let (id, description, created_at, tenant) =
            (e.evaluation_id.to_string(), e.description.clone(), e.created_at, e.tenant_id);
        let pairs = serde_json::to_string(&e.pairs)?;
        self.call(move |c| {
            exec(
                c,
                "INSERT INTO evaluations (evaluation_id, description, pairs, created_at, tenant_id) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, description, pairs, created_at, tenant],
            )?;
            Ok(())
        })
        .await
    }

    async fn evaluation(&self, id: Uuid) -> StoreResult<Option<Evaluation>> {
        self.call(move |c| {
            let found = row(
                c,
                "SELECT description, pairs, created_at, tenant_id FROM evaluations WHERE evaluation_id = ?1",
                [id.to_string()],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, DateTime<Utc>>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                    ))
                },
            )
            .optional()?;
            found
                .map(|(description, pairs, created_at, tenant_id)| {
                    Ok(Evaluation {
                        evaluation_id: id,
                        tenant_id,
                        description,
                        pairs: serde_json::from_str(&pairs)?,
                        created_at,
                    })
                })
                .transpose()
        })
        .await
    }

    // ---- executions --------------------------------------------------

    async fn insert_execution(&self, e: &Execution, jobs: JobSource) -> StoreResult<()> {
        let id = e.execution_id.to_string();
        let (card_id, model, priority, status, created_at, tenant) =
            (e.prompt_card_id, e.model.clone(), e.priority, e.status.as_str(), e.created_at, e.tenant_id);
        let test_case_ids = serde_json::to_string(&e.test_case_ids)?;
        let configuration = serde_json::to_string(&e.configuration)?;
        self.call(move |c| {
            let tx = c.transaction()?;
            exec(&tx,
                "INSERT INTO executions (execution_id, prompt_card_id, test_case_ids, model, configuration, priority, status, created_at, jobs, tenant_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, '[]', ?9)",
                params![id, card_id, test_case_ids, model, configuration, priority, status, created_at, tenant],
            )?;
            {
                let mut insert = tx
                    .prepare_cached("INSERT INTO execution_jobs (execution_id, test_case_id, job) VALUES (?1, ?2, ?3)")?;
                for job in jobs {
                    let job = job?;
                    insert.execute(params![id, job.test_case_id, job.json])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn set_execution_status(&self, id: Uuid, status: ExecutionStatus) -> StoreResult<bool> {
        let now = Utc::now();
        self.call(move |c| {
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
        .await
    }

    async fn execution(&self, id: Uuid) -> StoreResult<Option<Execution>> {
        self.call(move |c| {
            row(c, &format!("{EXECUTION_SELECT} WHERE execution_id = ?1"), [id.to_string()], execution_row)
                .optional()?
                .transpose()
        })
        .await
    }

    async fn unfinished_executions(&self) -> StoreResult<Vec<(Execution, Vec<String>)>> {
        self.call(move |c| {
            let executions: Vec<Execution> = {
                let mut stmt = c.prepare_cached(&format!(
                    "{EXECUTION_SELECT} WHERE status IN ('queued', 'running') ORDER BY created_at, rowid"
                ))?;
                let rows = stmt.query_map([], execution_row)?;
                rows.map(|r| r.map_err(StoreError::from).and_then(|x| x)).collect::<StoreResult<_>>()?
            };
            let mut stmt = c.prepare_cached("SELECT job FROM execution_jobs WHERE execution_id = ?1 ORDER BY rowid")?;
            executions
                .into_iter()
                .map(|e| {
                    let jobs = stmt.query_map([e.execution_id.to_string()], |r| r.get(0))?;
                    Ok((e, jobs.collect::<Result<Vec<String>, _>>()?))
                })
                .collect()
        })
        .await
    }

    async fn recent_executions(&self, tenant: Option<i64>, limit: u64, offset: u64) -> StoreResult<Vec<Execution>> {
        let (limit, offset) = (i64::try_from(limit).unwrap_or(i64::MAX), i64::try_from(offset).unwrap_or(i64::MAX));
        self.call(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "{EXECUTION_SELECT} WHERE (?3 IS NULL OR tenant_id = ?3) ORDER BY created_at DESC, rowid DESC LIMIT ?1 OFFSET ?2"
            ))?;
            let rows = stmt.query_map(params![limit, offset, tenant], execution_row)?;
            rows.map(|r| r.map_err(StoreError::from).and_then(|x| x)).collect()
        })
        .await
    }

    async fn execution_counts(&self, tenant: Option<i64>) -> StoreResult<Vec<(ExecutionStatus, u64)>> {
        let stored = self
            .call(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT status, COUNT(*) FROM executions WHERE ?1 IS NULL OR tenant_id = ?1 GROUP BY status",
                )?;
                let rows = stmt.query_map([tenant], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok(rows.collect::<Result<Vec<(String, i64)>, _>>()?)
            })
            .await?;
        Ok(counts_by_status(stored))
    }

    // ---- plugins -----------------------------------------------------

    async fn put_plugin(&self, owner: Option<i64>, hash: &str, name: &str, bytes: &[u8]) -> StoreResult<()> {
        let (hash, name, bytes) = (hash.to_string(), name.to_string(), bytes.to_vec());
        self.call(move |c| put_plugin(c, owner_key(owner), &hash, &name, &bytes)).await
    }

    async fn replace_plugin(
        &self,
        owner: Option<i64>,
        hash: &str,
        name: &str,
        bytes: &[u8],
        keep: usize,
    ) -> StoreResult<Vec<String>> {
        let (hash, name, bytes) = (hash.to_string(), name.to_string(), bytes.to_vec());
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        self.call(move |c| {
            let tx = c.transaction()?;
            put_plugin(&tx, owner_key(owner), &hash, &name, &bytes)?;
            let dropped: Vec<String> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT hash FROM plugins WHERE owner = ?1 AND name = ?2
                     ORDER BY uploaded_at DESC, rowid DESC LIMIT -1 OFFSET ?3",
                )?;
                let rows = stmt.query_map(params![owner_key(owner), name, keep], |r| r.get(0))?;
                rows.collect::<Result<_, _>>()?
            };
            for old in &dropped {
                exec(&tx, "DELETE FROM plugins WHERE owner = ?1 AND hash = ?2", params![owner_key(owner), old])?;
            }
            tx.commit()?;
            Ok(dropped)
        })
        .await
    }

    async fn delete_plugin(&self, owner: Option<i64>, name: &str) -> StoreResult<Vec<String>> {
        let name = name.to_string();
        self.call(move |c| {
            let tx = c.transaction()?;
            let hashes = delete_plugin(&tx, owner_key(owner), &name)?;
            tx.commit()?;
            Ok(hashes)
        })
        .await
    }

    async fn plugins(&self) -> StoreResult<Vec<StoredPlugin>> {
        self.call(|c| {
            let mut stmt =
                c.prepare_cached("SELECT owner, name, hash, bytes FROM plugins ORDER BY uploaded_at, rowid")?;
            let rows = stmt.query_map([], |r| {
                let owner: i64 = r.get(0)?;
                Ok(StoredPlugin {
                    owner: (owner != 0).then_some(owner),
                    name: r.get(1)?,
                    hash: r.get(2)?,
                    bytes: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn put_adapter(&self, owner: Option<i64>, adapter: &StoredAdapter) -> StoreResult<bool> {
        let adapter = adapter.clone();
        self.call(move |c| {
            let inserted = c
                .prepare_cached(
                    "INSERT INTO adapters (owner, name, hash, bytes, manifest, uploaded_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (owner, name) DO NOTHING",
                )?
                .execute(params![
                    owner_key(owner),
                    adapter.name,
                    adapter.hash,
                    adapter.bytes,
                    adapter.manifest,
                    Utc::now()
                ])?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn delete_adapter(&self, owner: Option<i64>, name: &str) -> StoreResult<bool> {
        let name = name.to_string();
        self.call(move |c| {
            let deleted = c
                .prepare_cached("DELETE FROM adapters WHERE owner = ?1 AND name = ?2")?
                .execute(params![owner_key(owner), name])?;
            Ok(deleted == 1)
        })
        .await
    }

    async fn adapters(&self) -> StoreResult<Vec<(Option<i64>, StoredAdapter)>> {
        self.call(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT owner, name, hash, bytes, manifest FROM adapters ORDER BY uploaded_at, rowid",
            )?;
            let rows = stmt.query_map([], |r| {
                let owner: i64 = r.get(0)?;
                Ok((
                    (owner != 0).then_some(owner),
                    StoredAdapter { name: r.get(1)?, hash: r.get(2)?, bytes: r.get(3)?, manifest: r.get(4)? },
                ))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    // ---- tenants and API keys -----------------------------------------

    async fn create_tenant(&self, name: &str) -> StoreResult<Option<Tenant>> {
        let (name, now) = (name.to_string(), Utc::now());
        self.call(move |c| {
            let inserted = c
                .prepare_cached("INSERT INTO tenants (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING")?
                .execute(params![name, now])?;
            Ok((inserted == 1).then(|| Tenant { id: c.last_insert_rowid(), name, created_at: now }))
        })
        .await
    }

    async fn tenants(&self) -> StoreResult<Vec<Tenant>> {
        self.call(|c| {
            let mut stmt = c.prepare_cached("SELECT id, name, created_at FROM tenants ORDER BY id")?;
            let rows = stmt.query_map([], tenant_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn adopt_unowned(&self, tenant_id: i64) -> StoreResult<(u64, u64)> {
        self.call(move |c| {
            let tx = c.transaction()?;
            let cards = exec(&tx, "UPDATE prompt_cards SET tenant_id = ?1 WHERE tenant_id IS NULL", [tenant_id])?;
            let executions = exec(&tx, "UPDATE executions SET tenant_id = ?1 WHERE tenant_id IS NULL", [tenant_id])?;
            exec(&tx, "UPDATE evaluations SET tenant_id = ?1 WHERE tenant_id IS NULL", [tenant_id])?;
            tx.commit()?;
            Ok((cards as u64, executions as u64))
        })
        .await
    }

    async fn create_api_key(&self, tenant_id: i64, key_id: &str, key_hash: &str) -> StoreResult<bool> {
        let (key_id, key_hash, now) = (key_id.to_string(), key_hash.to_string(), Utc::now());
        self.call(move |c| {
            let inserted = c
                .prepare_cached(
                    "INSERT INTO api_keys (key_id, tenant_id, key_hash, created_at)
                     SELECT ?1, id, ?3, ?4 FROM tenants WHERE id = ?2",
                )?
                .execute(params![key_id, tenant_id, key_hash, now])?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn unfinished_tests(&self, tenant_id: i64) -> StoreResult<u64> {
        self.call(move |c| {
            let n: i64 = row(
                c,
                "SELECT COALESCE(SUM(json_array_length(test_case_ids)), 0) FROM executions
                 WHERE tenant_id = ?1 AND status IN ('queued', 'running')",
                [tenant_id],
                |r| r.get(0),
            )?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn revoke_api_key(&self, key_id: &str) -> StoreResult<bool> {
        let (key_id, now) = (key_id.to_string(), Utc::now());
        self.call(move |c| {
            let changed = c
                .prepare_cached("UPDATE api_keys SET revoked_at = ?2 WHERE key_id = ?1 AND revoked_at IS NULL")?
                .execute(params![key_id, now])?;
            Ok(changed == 1)
        })
        .await
    }

    async fn tenant_of_key(&self, key_hash: &str) -> StoreResult<Option<Tenant>> {
        let key_hash = key_hash.to_string();
        self.call(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT t.id, t.name, t.created_at FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
                 WHERE k.key_hash = ?1 AND k.revoked_at IS NULL",
            )?;
            Ok(stmt.query_row([key_hash], tenant_row).optional()?)
        })
        .await
    }

    // ---- results -----------------------------------------------------

    async fn put_results(&self, results: &[TestResult]) -> StoreResult<()> {
        if results.is_empty() {
            return Ok(());
        }
        let rows = ResultRow::batch(results)?;
        self.call(move |c| {
            let tx = c.transaction()?;
            {
                let mut upsert = tx.prepare_cached(
                    "INSERT INTO test_results (execution_id, test_case_id, status, payload) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (execution_id, test_case_id) DO UPDATE SET status = excluded.status, payload = excluded.payload",
                )?;
                for r in &rows {
                    upsert.execute(params![r.execution_id.to_string(), r.test_case_id, r.status, r.payload])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn results(&self, execution_id: Uuid) -> StoreResult<Vec<TestResult>> {
        // Parsed here, off the blocking thread: the lock is held for the
        // read only.
        let payloads: Vec<String> = self
            .call(move |c| {
                let mut stmt =
                    c.prepare_cached("SELECT payload FROM test_results WHERE execution_id = ?1 ORDER BY rowid")?;
                let rows = stmt.query_map([execution_id.to_string()], |r| r.get::<_, String>(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await?;
        payloads.iter().map(|p| Ok(serde_json::from_str(p)?)).collect()
    }

    async fn result_summary(&self, execution_id: Uuid) -> StoreResult<ResultSummary> {
        let groups = self
            .call(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT status, COUNT(*),
                            COALESCE(SUM(json_extract(payload, '$.execution_time_ms')), 0),
                            COALESCE(SUM(json_extract(payload, '$.flaky')), 0)
                     FROM test_results WHERE execution_id = ?1 GROUP BY status",
                )?;
                let rows =
                    stmt.query_map([execution_id.to_string()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?;
        summary_of(groups)
    }

    async fn result_counts(&self, execution_id: Uuid) -> StoreResult<Vec<(TestStatus, usize)>> {
        let groups: Vec<(String, i64)> = self
            .call(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT status, COUNT(*) FROM test_results WHERE execution_id = ?1 GROUP BY status",
                )?;
                let rows = stmt.query_map([execution_id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await?;
        groups.into_iter().map(|(s, n)| Ok((test_status(&s)?, usize::try_from(n).unwrap_or(0)))).collect()
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

fn card_by_id(c: &Connection, id: i64) -> StoreResult<Option<PromptCard>> {
    row(
        c,
        "SELECT id, title, description, prompt_template, variables, created_at, updated_at, tenant_id, filters FROM prompt_cards WHERE id = ?1",
        [id],
        card_row,
    )
    .optional()?
    .transpose()
}

fn test_case_by_id(c: &Connection, id: i64) -> StoreResult<Option<TestCase>> {
    row(c,
        "SELECT id, prompt_card_id, name, input_variables, expected_output, assertions, created_at, threshold, transform FROM test_cases WHERE id = ?1",
        [id],
        test_case_row,
    )
    .optional()?
    .transpose()
}

/// The `owner` column: 0 for a shared plugin (tenant ids start at 1).
fn owner_key(owner: Option<i64>) -> i64 {
    owner.unwrap_or(0)
}

fn put_plugin(c: &Connection, owner: i64, hash: &str, name: &str, bytes: &[u8]) -> StoreResult<()> {
    exec(
        c,
        "INSERT INTO plugins (owner, hash, name, bytes, uploaded_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (owner, hash) DO UPDATE SET name = excluded.name, uploaded_at = excluded.uploaded_at",
        params![owner, hash, name, bytes, Utc::now()],
    )?;
    Ok(())
}

fn delete_plugin(c: &Connection, owner: i64, name: &str) -> StoreResult<Vec<String>> {
    let hashes: Vec<String> = {
        let mut stmt = c.prepare_cached("SELECT hash FROM plugins WHERE owner = ?1 AND name = ?2")?;
        let rows = stmt.query_map(params![owner, name], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    exec(c, "DELETE FROM plugins WHERE owner = ?1 AND name = ?2", params![owner, name])?;
    Ok(hashes)
}

const EXECUTION_SELECT: &str = "SELECT execution_id, prompt_card_id, test_case_ids, model, configuration, priority, status, created_at, started_at, completed_at, tenant_id FROM executions";

fn tenant_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant { id: row.get(0)?, name: row.get(1)?, created_at: row.get(2)? })
}

fn card_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoreResult<PromptCard>> {
    let variables: String = row.get(4)?;
    let filters: Option<String> = row.get(8)?;
    let (id, title, description, prompt_template, created_at, updated_at, tenant_id) =
        (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(5)?, row.get(6)?, row.get(7)?);
    let parsed = (|| -> StoreResult<PromptCard> {
        Ok(PromptCard {
            id,
            tenant_id,
            title,
            description,
            prompt_template,
            variables: serde_json::from_str(&variables)?,
            filters: super::filters_from_column(filters.as_deref())?,
            created_at,
            updated_at,
        })
    })();
    Ok(parsed)
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
            transform: row.get(8)?,
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
            tenant_id: row.get(10)?,
        })
    })();
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::store::conformance;

    #[tokio::test]
    async fn sqlite_store_conforms() {
        conformance::run_all(|| async { Arc::new(SqliteStore::in_memory().unwrap()) as Arc<dyn Store> }).await;
    }

    #[tokio::test]
    async fn a_sqlite_file_store_conforms_and_keeps_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let n = std::sync::atomic::AtomicUsize::new(0);
        let dir_path = dir.path().to_path_buf();
        conformance::run_all(|| {
            let path = dir_path.join(format!("{}.db", n.fetch_add(1, std::sync::atomic::Ordering::SeqCst)));
            async move { Arc::new(SqliteStore::open(&path).unwrap()) as Arc<dyn Store> }
        })
        .await;
        let path = dir.path().join("reopened.db");
        let card = CardInput {
            tenant_id: None,
            title: "t".into(),
            description: String::new(),
            prompt_template: "p".into(),
            variables: vec![],
            filters: Default::default(),
        };
        let id = SqliteStore::open(&path).unwrap().create_card(&card).await.unwrap().id;
        assert_eq!(SqliteStore::open(&path).unwrap().card(id).await.unwrap().map(|c| c.title), Some("t".into()));
    }

    fn execution() -> Execution {
        Execution {
            tenant_id: None,
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

    fn job_rows(store: &SqliteStore) -> i64 {
        store.with(|c| Ok(c.query_row("SELECT COUNT(*) FROM execution_jobs", [], |r| r.get(0))?)).unwrap()
    }

    #[tokio::test]
    async fn migration_moves_the_jobs_of_unfinished_executions_out_of_the_array() {
        let store = SqliteStore::in_memory().unwrap();
        // Back to schema 2, where jobs were one JSON array per execution
        // (undoing migrations 3 to 7).
        store
            .with(|c| {
                c.execute_batch(
                    "DROP TABLE execution_jobs; DROP TABLE evaluations; ALTER TABLE test_cases DROP COLUMN threshold; ALTER TABLE test_cases DROP COLUMN transform;
                     ALTER TABLE prompt_cards DROP COLUMN filters;
                     DROP TABLE api_keys; DROP TABLE tenants; DROP INDEX prompt_cards_by_tenant;
                     ALTER TABLE prompt_cards DROP COLUMN tenant_id; ALTER TABLE executions DROP COLUMN tenant_id;
                     DROP TABLE adapters;
                     PRAGMA user_version = 2;",
                )?;
                Ok(())
            })
            .unwrap();
        let (queued, finished) = (execution(), execution());
        for (e, status) in [(&queued, "queued"), (&finished, "completed")] {
            let (id, configuration, created_at) =
                (e.execution_id.to_string(), serde_json::to_string(&e.configuration).unwrap(), e.created_at);
            store
                .with(move |c| {
                    c.execute(
                        "INSERT INTO executions (execution_id, prompt_card_id, test_case_ids, model, configuration, priority, status, created_at, jobs)
                         VALUES (?1, 1, '[3,1,2]', 'echo:echo', ?2, 5, ?3, ?4, ?5)",
                        params![
                            id,
                            configuration,
                            status,
                            created_at,
                            r#"[{"test_case_id":3,"n":"a"},{"test_case_id":1,"n":"b"},{"test_case_id":2,"n":"c"}]"#
                        ],
                    )?;
                    Ok(())
                })
                .unwrap();
        }
        store.with(|c| schema::migrate(c)).unwrap();

        let unfinished = store.unfinished_executions().await.unwrap();
        assert_eq!(unfinished.len(), 1);
        assert_eq!(unfinished[0].0.execution_id, queued.execution_id);
        let jobs: Vec<serde_json::Value> = unfinished[0].1.iter().map(|j| serde_json::from_str(j).unwrap()).collect();
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
