//! The PostgreSQL store: one database shared by several API hosts
//! (`DATABASE_URL=postgres://...`).
//!
//! tokio-postgres speaks the protocol asynchronously (no thread per
//! statement); deadpool-postgres keeps a pool of its connections, each with
//! its own prepared-statement cache. Batches travel as arrays: writing 500
//! results or 100,000 jobs is a few statements (`UNNEST`), not one per row.
//!
//! Where SQLite relies on one writer, this backend takes a lock instead:
//! an import holds a transaction-level advisory lock on its card's title,
//! so two hosts importing one suite at once make one card.

mod schema;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{NoTls, Row};
use uuid::Uuid;

use super::{
    CardInput, CardPage, Imported, JobSource, ResultRow, Store, StoreError, StoreResult, StoredAdapter, StoredJob,
    StoredPlugin, Tenant, TestCaseInput, counts_by_status, like_pattern, summary_of, test_status,
};
use crate::domain::{
    Evaluation, Execution, ExecutionStatus, PromptCard, ResultSummary, TestCase, TestResult, TestStatus,
};

/// Connections per host. Requests hold one for a statement or two; the
/// collector holds one per batch.
const POOL_SIZE: usize = 16;
/// How long a call waits for a connection before failing as unavailable.
const POOL_WAIT: Duration = Duration::from_secs(10);
/// Rows per statement when a batch is written as arrays: bounds one
/// statement's size, whatever the batch.
const CHUNK: usize = 1_000;
/// Statements in flight at once on one connection during an import.
const IMPORT_PIPELINE: usize = 1_000;

pub struct PostgresStore {
    pool: Pool,
}

impl PostgresStore {
    /// Connects to `url` and migrates the schema.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let config: tokio_postgres::Config =
            url.parse().map_err(|e| StoreError::Config(format!("DATABASE_URL is not a postgres URL: {e}")))?;
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        let store = Self { pool };
        let mut client = store.client().await?;
        schema::migrate(&mut client).await?;
        Ok(store)
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Client> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => StoreError::Postgres(e),
            other => StoreError::Unavailable(other.to_string()),
        })
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    // ---- cards -------------------------------------------------------

    async fn create_card(&self, card: &CardInput) -> StoreResult<PromptCard> {
        let variables = serde_json::to_string(&card.variables)?;
        let filters = card.filters_column()?;
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO prompt_cards (title, description, prompt_template, variables, created_at, updated_at, tenant_id, filters)
                 VALUES ($1, $2, $3, $4, $5, $5, $6, $7) RETURNING id, title, description, prompt_template, variables, created_at, updated_at, tenant_id, filters",
            )
            .await?;
        let row = client
            .query_one(
                &stmt,
                &[
                    &card.title,
                    &card.description,
                    &card.prompt_template,
                    &variables,
                    &Utc::now(),
                    &card.tenant_id,
                    &filters,
                ],
            )
            .await?;
        card_row(&row)
    }

    async fn update_card(&self, id: i64, card: &CardInput) -> StoreResult<Option<PromptCard>> {
        let variables = serde_json::to_string(&card.variables)?;
        let filters = card.filters_column()?;
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE prompt_cards SET title = $2, description = $3, prompt_template = $4, variables = $5, updated_at = $6, filters = $7
                 WHERE id = $1 RETURNING id, title, description, prompt_template, variables, created_at, updated_at, tenant_id, filters",
            )
            .await?;
        let row = client
            .query_opt(
                &stmt,
                &[&id, &card.title, &card.description, &card.prompt_template, &variables, &Utc::now(), &filters],
            )
            .await?;
        row.as_ref().map(card_row).transpose()
    }

    async fn delete_card(&self, id: i64) -> StoreResult<bool> {
        let client = self.client().await?;
        let stmt = client.prepare_cached("DELETE FROM prompt_cards WHERE id = $1").await?;
        Ok(client.execute(&stmt, &[&id]).await? > 0)
    }

    async fn card(&self, id: i64) -> StoreResult<Option<PromptCard>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(&format!("{CARD_SELECT} WHERE id = $1")).await?;
        client.query_opt(&stmt, &[&id]).await?.as_ref().map(card_row).transpose()
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
        let client = self.client().await?;
        // ILIKE: SQLite's LIKE ignores ASCII case, and so must this.
        let count = client
            .prepare_cached(
                "SELECT COUNT(*) FROM prompt_cards WHERE (title ILIKE $1 OR description ILIKE $1)
                 AND ($2::BIGINT IS NULL OR tenant_id = $2)",
            )
            .await?;
        let total: i64 = client.query_one(&count, &[&pattern, &tenant]).await?.try_get(0)?;
        let stmt = client
            .prepare_cached(&format!(
                "{CARD_SELECT} WHERE (title ILIKE $1 OR description ILIKE $1) AND ($4::BIGINT IS NULL OR tenant_id = $4)
                 ORDER BY id DESC LIMIT $2 OFFSET $3"
            ))
            .await?;
        let items = client
            .query(&stmt, &[&pattern, &sql_limit, &offset, &tenant])
            .await?
            .iter()
            .map(card_row)
            .collect::<StoreResult<_>>()?;
        Ok(CardPage { items, total: u64::try_from(total).unwrap_or(0), page, limit })
    }

    async fn import_card(&self, card: &CardInput, cases: &[TestCaseInput]) -> StoreResult<Imported> {
        let variables = serde_json::to_string(&card.variables)?;
        let filters = card.filters_column()?;
        let now = Utc::now();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // One import per title at a time, across hosts.
        tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", &[&card.title]).await?;
        let existing: Option<i64> = tx
            .query_opt(
                "SELECT id FROM prompt_cards WHERE title = $1 AND tenant_id IS NOT DISTINCT FROM $2 ORDER BY id LIMIT 1",
                &[&card.title, &card.tenant_id],
            )
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        let card_id: i64 = match existing {
            Some(id) => {
                tx.execute(
                    "UPDATE prompt_cards SET description = $2, prompt_template = $3, variables = $4, updated_at = $5, filters = $6 WHERE id = $1",
                    &[&id, &card.description, &card.prompt_template, &variables, &now, &filters],
                )
                .await?;
                id
            }
            None => tx
                .query_one(
                    "INSERT INTO prompt_cards (title, description, prompt_template, variables, created_at, updated_at, tenant_id, filters)
                     VALUES ($1, $2, $3, $4, $5, $5, $6, $7) RETURNING id",
                    &[&card.title, &card.description, &card.prompt_template, &variables, &now, &card.tenant_id, &filters],
                )
                .await?
                .try_get(0)?,
        };
        // Existing cases by name, oldest first, each matched once.
        let rows =
            tx.query("SELECT id, name FROM test_cases WHERE prompt_card_id = $1 ORDER BY id", &[&card_id]).await?;
        let mut old: HashMap<String, VecDeque<i64>> = HashMap::new();
        for r in &rows {
            old.entry(r.try_get(1)?).or_default().push_back(r.try_get(0)?);
        }
        let update = tx
            .prepare_cached(
                "UPDATE test_cases SET input_variables = $2, expected_output = $3, assertions = $4, threshold = $5, transform = $6 WHERE id = $1",
            )
            .await?;
        let insert = tx
            .prepare_cached(
                "INSERT INTO test_cases (prompt_card_id, name, input_variables, expected_output, assertions, created_at, threshold, transform)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            )
            .await?;
        let mut ids = Vec::with_capacity(cases.len());
        // Statements of a chunk are pipelined on the connection: a large
        // import costs a few round trips, not one per case.
        for chunk in cases.chunks(IMPORT_PIPELINE) {
            let mut writes = Vec::with_capacity(chunk.len());
            for tc in chunk {
                let (inputs, assertions) = tc.json_columns()?;
                let reuse = old.get_mut(&tc.name).and_then(VecDeque::pop_front);
                let (tx, update, insert) = (&tx, &update, &insert);
                writes.push(async move {
                    match reuse {
                        Some(id) => {
                            tx.execute(
                                update,
                                &[&id, &inputs, &tc.expected_output, &assertions, &tc.threshold, &tc.transform],
                            )
                            .await?;
                            Ok::<i64, StoreError>(id)
                        }
                        None => {
                            let row = tx
                                .query_one(
                                    insert,
                                    &[
                                        &card_id,
                                        &tc.name,
                                        &inputs,
                                        &tc.expected_output,
                                        &assertions,
                                        &now,
                                        &tc.threshold,
                                        &tc.transform,
                                    ],
                                )
                                .await?;
                            Ok(row.try_get(0)?)
                        }
                    }
                });
            }
            ids.extend(futures_util::future::try_join_all(writes).await?);
        }
        let stale: Vec<i64> = old.into_values().flatten().collect();
        if !stale.is_empty() {
            tx.execute("DELETE FROM test_cases WHERE id = ANY($1)", &[&stale]).await?;
        }
        let stored = tx.query_one(&format!("{CARD_SELECT} WHERE id = $1"), &[&card_id]).await?;
        let stored = card_row(&stored)?;
        tx.commit().await?;
        Ok(Imported { card: stored, test_case_ids: ids, updated: existing.is_some() })
    }

    // ---- test cases --------------------------------------------------

    async fn create_test_case(&self, card_id: i64, tc: &TestCaseInput) -> StoreResult<Option<TestCase>> {
        let (inputs, assertions) = tc.json_columns()?;
        let client = self.client().await?;
        // Inserted only if the card exists, in one statement: a card
        // deleted meanwhile on another host is not an error.
        let stmt = client
            .prepare_cached(&format!(
                "INSERT INTO test_cases (prompt_card_id, name, input_variables, expected_output, assertions, created_at, threshold, transform)
                 SELECT id, $2, $3, $4, $5, $6, $7, $8 FROM prompt_cards WHERE id = $1
                 RETURNING {TEST_CASE_COLUMNS}"
            ))
            .await?;
        let row = client
            .query_opt(
                &stmt,
                &[
                    &card_id,
                    &tc.name,
                    &inputs,
                    &tc.expected_output,
                    &assertions,
                    &Utc::now(),
                    &tc.threshold,
                    &tc.transform,
                ],
            )
            .await;
        match row {
            Ok(row) => row.as_ref().map(test_case_row).transpose(),
            // The card went between the SELECT and the insert's key check.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn update_test_case(&self, id: i64, tc: &TestCaseInput) -> StoreResult<Option<TestCase>> {
        let (inputs, assertions) = tc.json_columns()?;
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "UPDATE test_cases SET name = $2, input_variables = $3, expected_output = $4, assertions = $5, threshold = $6,
                 transform = $7 WHERE id = $1 RETURNING {TEST_CASE_COLUMNS}"
            ))
            .await?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
            [&id, &tc.name, &inputs, &tc.expected_output, &assertions, &tc.threshold, &tc.transform];
        let row = client.query_opt(&stmt, &params).await?;
        row.as_ref().map(test_case_row).transpose()
    }

    async fn delete_test_case(&self, id: i64) -> StoreResult<bool> {
        let client = self.client().await?;
        let stmt = client.prepare_cached("DELETE FROM test_cases WHERE id = $1").await?;
        Ok(client.execute(&stmt, &[&id]).await? > 0)
    }

    async fn test_case(&self, id: i64) -> StoreResult<Option<TestCase>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(&format!("SELECT {TEST_CASE_COLUMNS} FROM test_cases WHERE id = $1")).await?;
        client.query_opt(&stmt, &[&id]).await?.as_ref().map(test_case_row).transpose()
    }

    async fn test_cases_of(&self, card_id: i64) -> StoreResult<Vec<TestCase>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {TEST_CASE_COLUMNS} FROM test_cases WHERE prompt_card_id = $1 ORDER BY id"
            ))
            .await?;
        client.query(&stmt, &[&card_id]).await?.iter().map(test_case_row).collect()
    }

    async fn test_cases_after(&self, card_id: i64, after_id: i64, limit: u32) -> StoreResult<Vec<TestCase>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {TEST_CASE_COLUMNS} FROM test_cases WHERE prompt_card_id = $1 AND id > $2 ORDER BY id LIMIT $3"
            ))
            .await?;
        let limit = i64::from(limit);
        client.query(&stmt, &[&card_id, &after_id, &limit]).await?.iter().map(test_case_row).collect()
    }

    // ---- evaluations -------------------------------------------------

    async fn insert_evaluation(&self, e: &Evaluation) -> StoreResult<()> {
        let pairs = serde_json::to_string(&e.pairs)?;
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO evaluations (evaluation_id, description, pairs, created_at, tenant_id) VALUES ($1, $2, $3, $4, $5)",
                &[&e.evaluation_id, &e.description, &pairs, &e.created_at, &e.tenant_id],
            )
            .await?;
        Ok(())
    }

    async fn evaluation(&self, id: Uuid) -> StoreResult<Option<Evaluation>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT description, pairs, created_at, tenant_id FROM evaluations WHERE evaluation_id = $1",
                &[&id],
            )
            .await?;
        row.map(|r| {
            let pairs: String = r.try_get(1)?;
            Ok(Evaluation {
                evaluation_id: id,
                tenant_id: r.try_get(3)?,
                description: r.try_get(0)?,
                pairs: serde_json::from_str(&pairs)?,
                created_at: r.try_get(2)?,
            })
        })
        .transpose()
    }

    // ---- executions --------------------------------------------------

    async fn insert_execution(&self, e: &Execution, mut jobs: JobSource) -> StoreResult<()> {
        let test_case_ids = serde_json::to_string(&e.test_case_ids)?;
        let configuration = serde_json::to_string(&e.configuration)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO executions (execution_id, prompt_card_id, test_case_ids, model, configuration, priority, status, created_at, tenant_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &e.execution_id,
                &e.prompt_card_id,
                &test_case_ids,
                &e.model,
                &configuration,
                &i32::from(e.priority),
                &e.status.as_str(),
                &e.created_at,
                &e.tenant_id,
            ],
        )
        .await?;
        let insert = tx
            .prepare_cached(
                "INSERT INTO execution_jobs (execution_id, test_case_id, job)
                 SELECT $1, j.id, j.job FROM UNNEST($2::int8[], $3::text[]) WITH ORDINALITY AS j(id, job, n) ORDER BY j.n",
            )
            .await?;
        loop {
            let chunk = jobs.by_ref().take(CHUNK).collect::<StoreResult<Vec<StoredJob>>>()?;
            if chunk.is_empty() {
                break;
            }
            let ids: Vec<i64> = chunk.iter().map(|j| j.test_case_id).collect();
            let json: Vec<&str> = chunk.iter().map(|j| j.json.as_str()).collect();
            tx.execute(&insert, &[&e.execution_id, &ids, &json]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn set_execution_status(&self, id: Uuid, status: ExecutionStatus) -> StoreResult<bool> {
        let now = Utc::now();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let moved = match status {
            ExecutionStatus::Running => tx.execute(
                "UPDATE executions SET status = $2, started_at = COALESCE(started_at, $3) WHERE execution_id = $1 AND status IN ('queued', 'running')",
                &[&id, &status.as_str(), &now],
            ).await?,
            ExecutionStatus::Queued => tx.execute(
                "UPDATE executions SET status = $2 WHERE execution_id = $1 AND status IN ('queued', 'running')",
                &[&id, &status.as_str()],
            ).await?,
            _ => tx.execute(
                "UPDATE executions SET status = $2, completed_at = $3 WHERE execution_id = $1 AND status IN ('queued', 'running')",
                &[&id, &status.as_str(), &now],
            ).await?,
        } > 0;
        if moved && status.is_finished() {
            tx.execute("DELETE FROM execution_jobs WHERE execution_id = $1", &[&id]).await?;
        }
        tx.commit().await?;
        Ok(moved)
    }

    async fn execution(&self, id: Uuid) -> StoreResult<Option<Execution>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(&format!("{EXECUTION_SELECT} WHERE execution_id = $1")).await?;
        client.query_opt(&stmt, &[&id]).await?.as_ref().map(execution_row).transpose()
    }

    async fn unfinished_executions(&self) -> StoreResult<Vec<(Execution, Vec<String>)>> {
        let client = self.client().await?;
        let executions: Vec<Execution> = client
            .query(&format!("{EXECUTION_SELECT} WHERE status IN ('queued', 'running') ORDER BY created_at, seq"), &[])
            .await?
            .iter()
            .map(execution_row)
            .collect::<StoreResult<_>>()?;
        let stmt = client.prepare_cached("SELECT job FROM execution_jobs WHERE execution_id = $1 ORDER BY seq").await?;
        let mut out = Vec::with_capacity(executions.len());
        for e in executions {
            let jobs = client
                .query(&stmt, &[&e.execution_id])
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<Vec<String>, _>>()?;
            out.push((e, jobs));
        }
        Ok(out)
    }

    async fn recent_executions(&self, tenant: Option<i64>, limit: u64, offset: u64) -> StoreResult<Vec<Execution>> {
        let (limit, offset) = (i64::try_from(limit).unwrap_or(i64::MAX), i64::try_from(offset).unwrap_or(i64::MAX));
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "{EXECUTION_SELECT} WHERE ($3::BIGINT IS NULL OR tenant_id = $3) ORDER BY created_at DESC, seq DESC LIMIT $1 OFFSET $2"
            ))
            .await?;
        client.query(&stmt, &[&limit, &offset, &tenant]).await?.iter().map(execution_row).collect()
    }

    async fn execution_counts(&self, tenant: Option<i64>) -> StoreResult<Vec<(ExecutionStatus, u64)>> {
        let client = self.client().await?;
        let stored = client
            .query(
                "SELECT status, COUNT(*) FROM executions WHERE $1::BIGINT IS NULL OR tenant_id = $1 GROUP BY status",
                &[&tenant],
            )
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<StoreResult<Vec<(String, i64)>>>()?;
        Ok(counts_by_status(stored))
    }

    // ---- plugins -----------------------------------------------------

    async fn put_plugin(&self, owner: Option<i64>, hash: &str, name: &str, bytes: &[u8]) -> StoreResult<()> {
        let client = self.client().await?;
        put_plugin(&client, owner_key(owner), hash, name, bytes).await
    }

    async fn replace_plugin(
        &self,
        owner: Option<i64>,
        hash: &str,
        name: &str,
        bytes: &[u8],
        keep: usize,
    ) -> StoreResult<Vec<String>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        put_plugin(&tx, owner_key(owner), hash, name, bytes).await?;
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let dropped: Vec<String> = tx
            .query(
                "DELETE FROM plugins WHERE owner = $1 AND hash IN (
                     SELECT hash FROM plugins WHERE owner = $1 AND name = $2
                     ORDER BY uploaded_at DESC, seq DESC OFFSET $3)
                 RETURNING hash",
                &[&owner_key(owner), &name, &keep],
            )
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        tx.commit().await?;
        Ok(dropped)
    }

    async fn delete_plugin(&self, owner: Option<i64>, name: &str) -> StoreResult<Vec<String>> {
        let client = self.client().await?;
        delete_plugin(&client, owner_key(owner), name).await
    }

    async fn plugins(&self) -> StoreResult<Vec<StoredPlugin>> {
        let client = self.client().await?;
        client
            .query("SELECT owner, name, hash, bytes FROM plugins ORDER BY uploaded_at, seq", &[])
            .await?
            .iter()
            .map(|r| {
                let owner: i64 = r.try_get(0)?;
                Ok(StoredPlugin {
                    owner: (owner != 0).then_some(owner),
                    name: r.try_get(1)?,
                    hash: r.try_get(2)?,
                    bytes: r.try_get(3)?,
                })
            })
            .collect()
    }

    async fn put_adapter(&self, owner: Option<i64>, adapter: &StoredAdapter) -> StoreResult<bool> {
        let client = self.client().await?;
        let inserted = client
            .execute(
                "INSERT INTO adapters (owner, name, hash, bytes, manifest, uploaded_at)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (owner, name) DO NOTHING",
                &[&owner_key(owner), &adapter.name, &adapter.hash, &adapter.bytes, &adapter.manifest, &Utc::now()],
            )
            .await?;
        Ok(inserted == 1)
    }

    async fn delete_adapter(&self, owner: Option<i64>, name: &str) -> StoreResult<bool> {
        let client = self.client().await?;
        let deleted =
            client.execute("DELETE FROM adapters WHERE owner = $1 AND name = $2", &[&owner_key(owner), &name]).await?;
        Ok(deleted == 1)
    }

    async fn adapters(&self) -> StoreResult<Vec<(Option<i64>, StoredAdapter)>> {
        let client = self.client().await?;
        client
            .query("SELECT owner, name, hash, bytes, manifest FROM adapters ORDER BY uploaded_at, seq", &[])
            .await?
            .iter()
            .map(|r| {
                let owner: i64 = r.try_get(0)?;
                Ok((
                    (owner != 0).then_some(owner),
                    StoredAdapter {
                        name: r.try_get(1)?,
                        hash: r.try_get(2)?,
                        bytes: r.try_get(3)?,
                        manifest: r.try_get(4)?,
                    },
                ))
            })
            .collect()
    }

    // ---- tenants and API keys -----------------------------------------

    async fn create_tenant(&self, name: &str) -> StoreResult<Option<Tenant>> {
        let client = self.client().await?;
        let now = Utc::now();
        let row = client
            .query_opt(
                "INSERT INTO tenants (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING id",
                &[&name, &now],
            )
            .await?;
        row.map(|r| Ok(Tenant { id: r.try_get(0)?, name: name.to_string(), created_at: now })).transpose()
    }

    async fn tenants(&self) -> StoreResult<Vec<Tenant>> {
        let client = self.client().await?;
        client
            .query("SELECT id, name, created_at FROM tenants ORDER BY id", &[])
            .await?
            .iter()
            .map(tenant_row)
            .collect()
    }

    async fn adopt_unowned(&self, tenant_id: i64) -> StoreResult<(u64, u64)> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let cards = tx.execute("UPDATE prompt_cards SET tenant_id = $1 WHERE tenant_id IS NULL", &[&tenant_id]).await?;
        let executions =
            tx.execute("UPDATE executions SET tenant_id = $1 WHERE tenant_id IS NULL", &[&tenant_id]).await?;
        tx.execute("UPDATE evaluations SET tenant_id = $1 WHERE tenant_id IS NULL", &[&tenant_id]).await?;
        tx.commit().await?;
        Ok((cards, executions))
    }

    async fn create_api_key(&self, tenant_id: i64, key_id: &str, key_hash: &str) -> StoreResult<bool> {
        let client = self.client().await?;
        let inserted = client
            .execute(
                "INSERT INTO api_keys (key_id, tenant_id, key_hash, created_at)
                 SELECT $1, id, $3, $4 FROM tenants WHERE id = $2",
                &[&key_id, &tenant_id, &key_hash, &Utc::now()],
            )
            .await?;
        Ok(inserted == 1)
    }

    async fn unfinished_tests(&self, tenant_id: i64) -> StoreResult<u64> {
        let client = self.client().await?;
        let n: i64 = client
            .query_one(
                "SELECT COALESCE(SUM(json_array_length(test_case_ids::json)), 0)::BIGINT FROM executions
                 WHERE tenant_id = $1 AND status IN ('queued', 'running')",
                &[&tenant_id],
            )
            .await?
            .try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn revoke_api_key(&self, key_id: &str) -> StoreResult<bool> {
        let client = self.client().await?;
        let changed = client
            .execute(
                "UPDATE api_keys SET revoked_at = $2 WHERE key_id = $1 AND revoked_at IS NULL",
                &[&key_id, &Utc::now()],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn tenant_of_key(&self, key_hash: &str) -> StoreResult<Option<Tenant>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT t.id, t.name, t.created_at FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
                 WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
            )
            .await?;
        client.query_opt(&stmt, &[&key_hash]).await?.as_ref().map(tenant_row).transpose()
    }

    // ---- results -----------------------------------------------------

    async fn put_results(&self, results: &[TestResult]) -> StoreResult<()> {
        if results.is_empty() {
            return Ok(());
        }
        // One row per key: an upsert may not touch one row twice.
        let rows = ResultRow::batch(results)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let upsert = tx
            .prepare_cached(
                "INSERT INTO test_results (execution_id, test_case_id, status, execution_time_ms, flaky, payload)
                 SELECT r.e, r.t, r.s, r.ms, r.f, r.p
                 FROM UNNEST($1::uuid[], $2::int8[], $3::text[], $4::int8[], $5::bool[], $6::text[]) WITH ORDINALITY AS r(e, t, s, ms, f, p, n)
                 ORDER BY r.n
                 ON CONFLICT (execution_id, test_case_id) DO UPDATE SET
                    status = excluded.status, execution_time_ms = excluded.execution_time_ms,
                    flaky = excluded.flaky, payload = excluded.payload",
            )
            .await?;
        for chunk in rows.chunks(CHUNK) {
            let executions: Vec<Uuid> = chunk.iter().map(|r| r.execution_id).collect();
            let tests: Vec<i64> = chunk.iter().map(|r| r.test_case_id).collect();
            let statuses: Vec<&str> = chunk.iter().map(|r| r.status).collect();
            let times: Vec<i64> = chunk.iter().map(|r| r.execution_time_ms).collect();
            let flaky: Vec<bool> = chunk.iter().map(|r| r.flaky).collect();
            let payloads: Vec<&str> = chunk.iter().map(|r| r.payload.as_str()).collect();
            tx.execute(&upsert, &[&executions, &tests, &statuses, &times, &flaky, &payloads]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn results(&self, execution_id: Uuid) -> StoreResult<Vec<TestResult>> {
        let client = self.client().await?;
        let stmt =
            client.prepare_cached("SELECT payload FROM test_results WHERE execution_id = $1 ORDER BY seq").await?;
        client
            .query(&stmt, &[&execution_id])
            .await?
            .iter()
            .map(|r| Ok(serde_json::from_str(r.try_get::<_, &str>(0)?)?))
            .collect()
    }

    async fn result_summary(&self, execution_id: Uuid) -> StoreResult<ResultSummary> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT status, COUNT(*), COALESCE(SUM(execution_time_ms), 0)::int8, COUNT(*) FILTER (WHERE flaky)
                 FROM test_results WHERE execution_id = $1 GROUP BY status",
            )
            .await?;
        let groups = client
            .query(&stmt, &[&execution_id])
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        summary_of(groups)
    }

    async fn result_counts(&self, execution_id: Uuid) -> StoreResult<Vec<(TestStatus, usize)>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT status, COUNT(*) FROM test_results WHERE execution_id = $1 GROUP BY status")
            .await?;
        client
            .query(&stmt, &[&execution_id])
            .await?
            .iter()
            .map(|r| {
                let (status, n): (&str, i64) = (r.try_get(0)?, r.try_get(1)?);
                Ok((test_status(status)?, usize::try_from(n).unwrap_or(0)))
            })
            .collect()
    }
}

/// The `owner` column: 0 for a shared plugin (tenant ids start at 1).
fn owner_key(owner: Option<i64>) -> i64 {
    owner.unwrap_or(0)
}

async fn put_plugin(
    client: &impl deadpool_postgres::GenericClient,
    owner: i64,
    hash: &str,
    name: &str,
    bytes: &[u8],
) -> StoreResult<()> {
    client
        .execute(
            "INSERT INTO plugins (owner, hash, name, bytes, uploaded_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (owner, hash) DO UPDATE SET name = excluded.name, uploaded_at = excluded.uploaded_at",
            &[&owner, &hash, &name, &bytes, &Utc::now()],
        )
        .await?;
    Ok(())
}

async fn delete_plugin(
    client: &impl deadpool_postgres::GenericClient,
    owner: i64,
    name: &str,
) -> StoreResult<Vec<String>> {
    client
        .query("DELETE FROM plugins WHERE owner = $1 AND name = $2 RETURNING hash", &[&owner, &name])
        .await?
        .iter()
        .map(|r| Ok(r.try_get(0)?))
        .collect()
}

const CARD_SELECT: &str = "SELECT id, title, description, prompt_template, variables, created_at, updated_at, tenant_id, filters FROM prompt_cards";
const TEST_CASE_COLUMNS: &str =
    "id, prompt_card_id, name, input_variables, expected_output, assertions, created_at, threshold, transform";
const EXECUTION_SELECT: &str = "SELECT execution_id, prompt_card_id, test_case_ids, model, configuration, priority, status, created_at, started_at, completed_at, tenant_id FROM executions";

fn tenant_row(row: &Row) -> StoreResult<Tenant> {
    Ok(Tenant { id: row.try_get(0)?, name: row.try_get(1)?, created_at: row.try_get(2)? })
}

fn card_row(row: &Row) -> StoreResult<PromptCard> {
    Ok(PromptCard {
        id: row.try_get(0)?,
        tenant_id: row.try_get(7)?,
        title: row.try_get(1)?,
        description: row.try_get(2)?,
        prompt_template: row.try_get(3)?,
        variables: serde_json::from_str(row.try_get(4)?)?,
        filters: super::filters_from_column(row.try_get(8)?)?,
        created_at: row.try_get(5)?,
        updated_at: row.try_get(6)?,
    })
}

fn test_case_row(row: &Row) -> StoreResult<TestCase> {
    Ok(TestCase {
        id: row.try_get(0)?,
        prompt_card_id: row.try_get(1)?,
        name: row.try_get(2)?,
        input_variables: serde_json::from_str(row.try_get(3)?)?,
        expected_output: row.try_get(4)?,
        assertions: serde_json::from_str(row.try_get(5)?)?,
        created_at: row.try_get(6)?,
        threshold: row.try_get(7)?,
        transform: row.try_get(8)?,
    })
}

fn execution_row(row: &Row) -> StoreResult<Execution> {
    let status: &str = row.try_get(6)?;
    let priority: i32 = row.try_get(5)?;
    Ok(Execution {
        execution_id: row.try_get(0)?,
        prompt_card_id: row.try_get(1)?,
        test_case_ids: serde_json::from_str(row.try_get(2)?)?,
        model: row.try_get(3)?,
        configuration: serde_json::from_str(row.try_get(4)?)?,
        priority: u8::try_from(priority).map_err(|_| StoreError::Corrupt(format!("priority {priority}")))?,
        status: ExecutionStatus::parse(status).ok_or_else(|| StoreError::Corrupt(format!("status {status}")))?,
        created_at: row.try_get(7)?,
        started_at: row.try_get(8)?,
        completed_at: row.try_get(9)?,
        tenant_id: row.try_get(10)?,
    })
}
