//! The store: cards, test cases, evaluations, executions with their jobs,
//! results and uploaded plugins, behind one async [`Store`] trait.
//!
//! Two backends keep the same contract (checked by `conformance.rs`):
//! - `sqlite/`: the embedded default, one file (or memory) serving one API
//!   host; its statements run on a thread of its own, never on an async
//!   worker.
//! - `postgres/`: one database shared by several API hosts
//!   (`DATABASE_URL=postgres://...`), through a connection pool.
//!
//! Invariants every backend keeps:
//! - Execution state lives here, never only in memory: a restarted host
//!   answers progress and results for finished executions and re-queues
//!   unfinished ones from their stored jobs.
//! - A result is keyed by (execution, test case): writing it again replaces
//!   it, so a result delivered twice is stored once.
//! - `put_results` writes its whole batch in one transaction: when it
//!   returns, every result of the batch is durable, or none is.
//! - A finished execution never changes status again, and finishing it
//!   deletes its stored jobs in the same transaction.

pub mod postgres;
pub mod sqlite;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use uuid::Uuid;

use crate::domain::{
    AssertionSpec, Evaluation, Execution, ExecutionStatus, PromptCard, ResultSummary, TestCase, TestResult, TestStatus,
};

/// Why a store call failed. Messages are for logs: the API sends clients a
/// generic message with a request id instead.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {}", postgres_detail(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection could be had (the database is down or the pool is
    /// exhausted for too long): worth retrying.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// `DATABASE_URL` or `DATABASE_PATH` cannot be used.
    #[error("database configuration: {0}")]
    Config(String),
    /// The task opening a SQLite file panicked.
    #[error("store task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The SQLite thread has stopped (a statement panicked).
    #[error("the SQLite thread has stopped")]
    Gone,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// A stable code per cause, for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Sqlite(_) => "sqlite",
            StoreError::Postgres(_) => "postgres",
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Config(_) => "config",
            StoreError::Task(_) => "task",
            StoreError::Gone => "gone",
            StoreError::Corrupt(_) => "corrupt",
        }
    }

    /// True when the database could not be reached (a 503, not a 500).
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Unavailable(_) => true,
            StoreError::Postgres(e) => e.is_closed() || e.as_db_error().is_none(),
            _ => false,
        }
    }
}

/// tokio-postgres displays a server's error as just "db error": the
/// server's message, detail and SQLSTATE are what a log needs.
fn postgres_detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let detail = db.detail().map(|d| format!(" ({d})")).unwrap_or_default();
            format!("{}{detail} [{}]", db.message(), db.code().code())
        }
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
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
    /// The owner (`None` while keys are off).
    pub tenant_id: Option<i64>,
    pub title: String,
    pub description: String,
    pub prompt_template: String,
    pub variables: Vec<String>,
    /// Custom template filters: name -> JavaScript whose value is the
    /// function.
    pub filters: BTreeMap<String, String>,
}

impl CardInput {
    /// The `filters` column: JSON, or NULL for none.
    pub(crate) fn filters_column(&self) -> StoreResult<Option<String>> {
        if self.filters.is_empty() { Ok(None) } else { Ok(Some(serde_json::to_string(&self.filters)?)) }
    }
}

/// A card's `filters` as stored (NULL: none).
pub(crate) fn filters_from_column(column: Option<&str>) -> StoreResult<BTreeMap<String, String>> {
    Ok(column.map(serde_json::from_str).transpose()?.unwrap_or_default())
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
    /// JavaScript applied to the model's output before the assertions.
    pub transform: Option<String>,
}

impl TestCaseInput {
    /// The two JSON columns both backends store: input variables and
    /// assertions.
    pub(crate) fn json_columns(&self) -> StoreResult<(String, String)> {
        Ok((serde_json::to_string(&self.input_variables)?, serde_json::to_string(&self.assertions)?))
    }
}

/// A page of cards.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CardPage {
    pub items: Vec<PromptCard>,
    pub total: u64,
    pub page: u64,
    pub limit: u64,
}

/// What [`Store::import_card`] did.
#[derive(Debug, Clone)]
pub struct Imported {
    pub card: PromptCard,
    /// The test case ids, in import order.
    pub test_case_ids: Vec<i64>,
    /// True when a card with the same title existed and was updated.
    pub updated: bool,
}

/// One job of an execution as stored: its test case and the job as JSON.
#[derive(Debug, Clone)]
pub struct StoredJob {
    pub test_case_id: i64,
    pub json: String,
}

/// An execution's jobs, in queue order, made one at a time as the store
/// writes them: a 100,000-test execution never holds all of its jobs as
/// JSON at once.
pub type JobSource = Box<dyn Iterator<Item = StoreResult<StoredJob>> + Send>;

/// Where the store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A private SQLite database in memory (`cardrun run`, tests).
    Memory,
    /// A SQLite file (`DATABASE_PATH`, the embedded default).
    Sqlite(PathBuf),
    /// A PostgreSQL database shared by several hosts (`DATABASE_URL`).
    Postgres(String),
}

impl Database {
    /// `DATABASE_URL` when set (postgres:// or postgresql://, or
    /// sqlite://PATH), else `DATABASE_PATH`, else `data/cardrun.db`.
    pub fn from_env() -> Result<Self, StoreError> {
        match std::env::var("DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => Self::from_url(url.trim()),
            _ => Ok(Database::Sqlite(
                std::env::var_os("DATABASE_PATH").map_or_else(|| PathBuf::from("data/cardrun.db"), PathBuf::from),
            )),
        }
    }

    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Database::Postgres(url.to_string()))
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            Ok(Database::Sqlite(PathBuf::from(path)))
        } else {
            Err(StoreError::Config(
                "DATABASE_URL must start with postgres://, postgresql:// or sqlite:// (or use DATABASE_PATH for a SQLite file)"
                    .into(),
            ))
        }
    }

    /// What to log: the backend and where, without a password.
    pub fn describe(&self) -> String {
        match self {
            Database::Memory => "sqlite in memory".into(),
            Database::Sqlite(path) => format!("sqlite {}", path.display()),
            Database::Postgres(url) => match url.parse::<tokio_postgres::Config>() {
                Ok(c) => format!(
                    "postgres {}/{}",
                    c.get_hosts()
                        .first()
                        .map(|h| match h {
                            tokio_postgres::config::Host::Tcp(h) => h.clone(),
                            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                        })
                        .unwrap_or_default(),
                    c.get_dbname().unwrap_or_default()
                ),
                Err(_) => "postgres".into(),
            },
        }
    }
}

/// Opens (creating and migrating) the store at `database`.
pub async fn open(database: &Database) -> StoreResult<Arc<dyn Store>> {
    Ok(match database {
        Database::Memory => Arc::new(sqlite::SqliteStore::in_memory()?),
        Database::Sqlite(path) => {
            let path = path.clone();
            Arc::new(tokio::task::spawn_blocking(move || sqlite::SqliteStore::open(&path)).await??)
        }
        Database::Postgres(url) => Arc::new(postgres::PostgresStore::connect(url).await?),
    })
}

/// Everything the product keeps. Every method is one short transaction.
#[async_trait]
pub trait Store: Send + Sync {
    /// `sqlite` or `postgres`, for logs, `/health` and metrics.
    fn backend(&self) -> &'static str;

    // ---- cards -------------------------------------------------------

    async fn create_card(&self, card: &CardInput) -> StoreResult<PromptCard>;
    /// `None` when the card does not exist.
    async fn update_card(&self, id: i64, card: &CardInput) -> StoreResult<Option<PromptCard>>;
    /// Deletes a card and its test cases; false when it did not exist.
    async fn delete_card(&self, id: i64) -> StoreResult<bool>;
    async fn card(&self, id: i64) -> StoreResult<Option<PromptCard>>;
    /// Cards whose title or description contains `search` (ignoring ASCII
    /// case; `%` and `_` match themselves), newest first, page 1 first;
    /// with `tenant`, only that tenant's.
    async fn list_cards(
        &self,
        tenant: Option<i64>,
        search: Option<&str>,
        page: u64,
        limit: u64,
    ) -> StoreResult<CardPage>;
    /// Imports a card and its test cases in one transaction. A card with
    /// the same title (the oldest, if several) is updated rather than
    /// duplicated: its test cases are matched by name, in order, and keep
    /// their ids; cases the import no longer has are deleted, new ones are
    /// added. Two hosts importing one title at once make one card. Titles
    /// are matched within the card's tenant.
    async fn import_card(&self, card: &CardInput, cases: &[TestCaseInput]) -> StoreResult<Imported>;

    // ---- test cases --------------------------------------------------

    /// `None` when the card does not exist.
    async fn create_test_case(&self, card_id: i64, tc: &TestCaseInput) -> StoreResult<Option<TestCase>>;
    async fn update_test_case(&self, id: i64, tc: &TestCaseInput) -> StoreResult<Option<TestCase>>;
    async fn delete_test_case(&self, id: i64) -> StoreResult<bool>;
    async fn test_case(&self, id: i64) -> StoreResult<Option<TestCase>>;
    /// A card's test cases, oldest first.
    async fn test_cases_of(&self, card_id: i64) -> StoreResult<Vec<TestCase>>;
    /// At most `limit` of a card's test cases with ids above `after_id`,
    /// oldest first: a large card read a page at a time.
    async fn test_cases_after(&self, card_id: i64, after_id: i64, limit: u32) -> StoreResult<Vec<TestCase>>;

    // ---- evaluations -------------------------------------------------

    async fn insert_evaluation(&self, e: &Evaluation) -> StoreResult<()>;
    async fn evaluation(&self, id: Uuid) -> StoreResult<Option<Evaluation>>;

    // ---- executions --------------------------------------------------

    /// Stores a new execution and its jobs (in queue order) in one
    /// transaction. The jobs are kept until the execution finishes, for
    /// [`Store::unfinished_executions`].
    async fn insert_execution(&self, e: &Execution, jobs: JobSource) -> StoreResult<()>;
    /// Moves an execution to `status`, stamping start/end times; a finished
    /// execution is never moved again (returns false then). Finishing it
    /// deletes its stored jobs in the same transaction.
    async fn set_execution_status(&self, id: Uuid, status: ExecutionStatus) -> StoreResult<bool>;
    async fn execution(&self, id: Uuid) -> StoreResult<Option<Execution>>;
    /// Executions still queued or running, oldest first, each with its
    /// stored jobs (JSON, in queue order).
    async fn unfinished_executions(&self) -> StoreResult<Vec<(Execution, Vec<String>)>>;
    /// Executions newest first, `limit` of them after skipping `offset`;
    /// with `tenant`, only that tenant's.
    async fn recent_executions(&self, tenant: Option<i64>, limit: u64, offset: u64) -> StoreResult<Vec<Execution>>;
    /// How many executions the store holds in each status, for every
    /// status (zero included), in [`ExecutionStatus::ALL`] order; with
    /// `tenant`, of that tenant's only.
    async fn execution_counts(&self, tenant: Option<i64>) -> StoreResult<Vec<(ExecutionStatus, u64)>>;

    // ---- plugins -----------------------------------------------------

    /// Keeps a plugin uploaded by `owner` (`None`: shared), keyed by owner
    /// and content hash. Uploading the same bytes again makes it the
    /// newest, as it is in the running sandbox.
    async fn put_plugin(&self, owner: Option<i64>, hash: &str, name: &str, bytes: &[u8]) -> StoreResult<()>;
    /// Keeps `bytes` as the newest upload of `owner`'s plugin `name` (a
    /// replacement) and the `keep - 1` uploads before it (versions tests
    /// queued earlier still use), in one transaction; returns the hashes of
    /// the older uploads it dropped.
    async fn replace_plugin(
        &self,
        owner: Option<i64>,
        hash: &str,
        name: &str,
        bytes: &[u8],
        keep: usize,
    ) -> StoreResult<Vec<String>>;
    /// Forgets every upload of `owner`'s plugin `name`; returns their hashes.
    async fn delete_plugin(&self, owner: Option<i64>, name: &str) -> StoreResult<Vec<String>>;
    /// Every uploaded plugin of every owner, oldest upload first.
    async fn plugins(&self) -> StoreResult<Vec<StoredPlugin>>;
    /// Keeps `owner`'s uploaded model adapter `adapter.name`; false when
    /// the owner has one of that name already.
    async fn put_adapter(&self, owner: Option<i64>, adapter: &StoredAdapter) -> StoreResult<bool>;
    /// Forgets `owner`'s adapter `name`; false when there was none.
    async fn delete_adapter(&self, owner: Option<i64>, name: &str) -> StoreResult<bool>;
    /// Every uploaded adapter of every owner, oldest first.
    async fn adapters(&self) -> StoreResult<Vec<(Option<i64>, StoredAdapter)>>;

    // ---- tenants and API keys -----------------------------------------

    /// A new tenant; `None` when the name is taken.
    async fn create_tenant(&self, name: &str) -> StoreResult<Option<Tenant>>;
    /// Every tenant, oldest first.
    async fn tenants(&self) -> StoreResult<Vec<Tenant>>;
    /// Gives tenant `tenant_id` every card, execution and evaluation that
    /// has no owner (made while keys were off), in one transaction; how
    /// many cards and executions it took.
    async fn adopt_unowned(&self, tenant_id: i64) -> StoreResult<(u64, u64)>;
    /// Keeps a new key of tenant `tenant_id` (only its hash); false when
    /// the tenant does not exist.
    async fn create_api_key(&self, tenant_id: i64, key_id: &str, key_hash: &str) -> StoreResult<bool>;
    /// Tests of tenant `tenant_id`'s executions that are queued or running.
    async fn unfinished_tests(&self, tenant_id: i64) -> StoreResult<u64>;
    /// Revokes a key at once; false when no live key has that id.
    async fn revoke_api_key(&self, key_id: &str) -> StoreResult<bool>;
    /// The tenant a live (unrevoked) key belongs to, by the key's hash.
    async fn tenant_of_key(&self, key_hash: &str) -> StoreResult<Option<Tenant>>;

    // ---- results -----------------------------------------------------

    /// Writes many final results in one transaction, each replacing any
    /// earlier result of its test (the last one wins within a batch too).
    async fn put_results(&self, results: &[TestResult]) -> StoreResult<()>;
    /// An execution's results, in the order they were first stored.
    async fn results(&self, execution_id: Uuid) -> StoreResult<Vec<TestResult>>;
    /// The summary of one execution's stored results, aggregated by the
    /// database (nothing but counts and sums is read).
    async fn result_summary(&self, execution_id: Uuid) -> StoreResult<ResultSummary>;
    /// `(status, count)` of the results of one execution.
    async fn result_counts(&self, execution_id: Uuid) -> StoreResult<Vec<(TestStatus, usize)>>;
}

/// A team with its own API keys (DESIGN section 12).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tenant {
    pub id: i64,
    pub name: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// An uploaded model adapter as stored: its component and its manifest
/// (JSON, secrets included: never returned by the API).
#[derive(Clone)]
pub struct StoredAdapter {
    pub name: String,
    pub hash: String,
    pub bytes: Vec<u8>,
    pub manifest: String,
}

/// An uploaded plugin as stored.
#[derive(Debug, Clone)]
pub struct StoredPlugin {
    /// The tenant that uploaded it; `None`: shared.
    pub owner: Option<i64>,
    pub name: String,
    pub hash: String,
    pub bytes: Vec<u8>,
}

/// One result as both backends write it: the key, the columns aggregated
/// in SQL, and the whole result as JSON. Built on the caller's task, so a
/// backend's transaction holds nothing but writes.
pub(crate) struct ResultRow {
    pub execution_id: Uuid,
    pub test_case_id: i64,
    pub status: &'static str,
    pub execution_time_ms: i64,
    pub flaky: bool,
    pub payload: String,
}

impl ResultRow {
    /// One row per (execution, test case), the last result of a batch
    /// winning, in the order each key first appears.
    pub fn batch(results: &[TestResult]) -> StoreResult<Vec<ResultRow>> {
        let mut index: std::collections::HashMap<(Uuid, i64), usize> = std::collections::HashMap::new();
        let mut rows: Vec<ResultRow> = Vec::with_capacity(results.len());
        for r in results {
            let row = ResultRow {
                execution_id: r.execution_id,
                test_case_id: r.test_case_id,
                status: r.status.as_str(),
                execution_time_ms: i64::try_from(r.execution_time_ms).unwrap_or(i64::MAX),
                flaky: r.flaky,
                payload: serde_json::to_string(r)?,
            };
            match index.get(&(r.execution_id, r.test_case_id)) {
                Some(&i) => rows[i] = row,
                None => {
                    index.insert((r.execution_id, r.test_case_id), rows.len());
                    rows.push(row);
                }
            }
        }
        Ok(rows)
    }
}

/// Escapes `search` for `LIKE ... ESCAPE '\'`, wrapped in `%`.
pub(crate) fn like_pattern(search: Option<&str>) -> String {
    format!("%{}%", search.unwrap_or("").replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"))
}

/// Parses a stored status.
pub(crate) fn test_status(s: &str) -> StoreResult<TestStatus> {
    serde_json::from_value(Value::String(s.to_string())).map_err(|_| StoreError::Corrupt(format!("status {s}")))
}

/// The summary from `(status, tests, time_ms, flaky)` groups.
pub(crate) fn summary_of(groups: Vec<(String, i64, i64, i64)>) -> StoreResult<ResultSummary> {
    let mut summary = ResultSummary::default();
    for (status, tests, time_ms, flaky) in groups {
        summary.add_group(
            test_status(&status)?,
            usize::try_from(tests).unwrap_or(0),
            u64::try_from(time_ms).unwrap_or(0),
            usize::try_from(flaky).unwrap_or(0),
        );
    }
    Ok(summary)
}

/// Counts per status, every status present, in [`ExecutionStatus::ALL`] order.
pub(crate) fn counts_by_status(stored: Vec<(String, i64)>) -> Vec<(ExecutionStatus, u64)> {
    ExecutionStatus::ALL
        .iter()
        .map(|s| {
            let n = stored.iter().find(|(k, _)| k == s.as_str()).map_or(0, |(_, n)| *n);
            (*s, u64::try_from(n).unwrap_or(0))
        })
        .collect()
}
