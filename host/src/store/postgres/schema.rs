//! PostgreSQL schema migrations, applied in order and tracked in
//! `cardrun_schema`. Several hosts may start at once: each takes a
//! transaction-level advisory lock first, so one migrates and the others
//! then find nothing left to do. PostgreSQL's DDL is transactional, so a
//! migration that fails leaves the schema as it was.
//!
//! The schema is the SQLite one at its migration 5, in PostgreSQL's types
//! (identity keys, `uuid`, `timestamptz`), plus an identity `seq` wherever
//! SQLite's order relies on its implicit rowid, and the two result columns
//! that summaries add up (SQLite reads them out of the JSON instead).

use deadpool_postgres::Client;

use crate::store::StoreResult;

/// Any constant unique to cardrun: the key of the migration lock.
const MIGRATION_LOCK: i64 = 0x6361_7264_7275_6e00; // "cardrun\0"

const MIGRATIONS: &[&str] = &[
    // 1: the schema as SQLite has it after its migration 5.
    "CREATE TABLE prompt_cards (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        title TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        prompt_template TEXT NOT NULL,
        variables TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX prompt_cards_by_title ON prompt_cards(title);
    CREATE TABLE test_cases (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        prompt_card_id BIGINT NOT NULL REFERENCES prompt_cards(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        input_variables TEXT NOT NULL,
        expected_output TEXT,
        assertions TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        threshold DOUBLE PRECISION
    );
    CREATE INDEX test_cases_by_card ON test_cases(prompt_card_id);
    CREATE TABLE executions (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        execution_id UUID PRIMARY KEY,
        prompt_card_id BIGINT NOT NULL,
        test_case_ids TEXT NOT NULL,
        model TEXT NOT NULL,
        configuration TEXT NOT NULL,
        priority INTEGER NOT NULL,
        status TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        started_at TIMESTAMPTZ,
        completed_at TIMESTAMPTZ
    );
    CREATE INDEX executions_by_status ON executions(status);
    CREATE INDEX executions_by_age ON executions(created_at, seq);
    CREATE TABLE execution_jobs (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        execution_id UUID NOT NULL,
        test_case_id BIGINT NOT NULL,
        job TEXT NOT NULL,
        UNIQUE (execution_id, test_case_id)
    );
    CREATE TABLE test_results (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        execution_id UUID NOT NULL,
        test_case_id BIGINT NOT NULL,
        status TEXT NOT NULL,
        execution_time_ms BIGINT NOT NULL,
        flaky BOOLEAN NOT NULL,
        payload TEXT NOT NULL,
        PRIMARY KEY (execution_id, test_case_id)
    );
    CREATE TABLE plugins (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        hash TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        bytes BYTEA NOT NULL,
        uploaded_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE evaluations (
        evaluation_id UUID PRIMARY KEY,
        description TEXT NOT NULL,
        pairs TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL
    );",
    // 2: tenants and their API keys (issue 14), as SQLite's migration 6.
    "CREATE TABLE tenants (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE api_keys (
        key_id TEXT PRIMARY KEY,
        tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        key_hash TEXT NOT NULL UNIQUE,
        created_at TIMESTAMPTZ NOT NULL,
        revoked_at TIMESTAMPTZ
    );",
    // 3: what each tenant owns, as SQLite's migration 7.
    "ALTER TABLE prompt_cards ADD COLUMN tenant_id BIGINT;
    ALTER TABLE executions ADD COLUMN tenant_id BIGINT;
    ALTER TABLE evaluations ADD COLUMN tenant_id BIGINT;
    CREATE INDEX prompt_cards_by_tenant ON prompt_cards(tenant_id, id);",
    // 4: uploaded plugins belong to a tenant, as SQLite's migration 8.
    "ALTER TABLE plugins ADD COLUMN owner BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE plugins DROP CONSTRAINT plugins_pkey;
    ALTER TABLE plugins ADD PRIMARY KEY (owner, hash);",
    // 5: model adapters uploaded by tenants, as SQLite's migration 9.
    "CREATE TABLE adapters (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        owner BIGINT NOT NULL,
        name TEXT NOT NULL,
        hash TEXT NOT NULL,
        bytes BYTEA NOT NULL,
        manifest TEXT NOT NULL,
        uploaded_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (owner, name)
    );",
    // 6: a test's `transform` and a card's `filters`, as SQLite's
    // migration 10.
    "ALTER TABLE test_cases ADD COLUMN transform TEXT;
    ALTER TABLE prompt_cards ADD COLUMN filters TEXT;",
];

/// Brings the database to the newest schema.
pub async fn migrate(client: &mut Client) -> StoreResult<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS cardrun_schema (version INTEGER NOT NULL)").await?;
    let current: i32 = match tx.query_opt("SELECT version FROM cardrun_schema", &[]).await? {
        Some(row) => row.try_get(0)?,
        None => {
            tx.execute("INSERT INTO cardrun_schema (version) VALUES (0)", &[]).await?;
            0
        }
    };
    let current = usize::try_from(current).unwrap_or(0);
    if current > MIGRATIONS.len() {
        return Err(crate::store::StoreError::Config(format!(
            "the database's schema is version {current}, newer than this cardrun knows ({}); upgrade cardrun",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.batch_execute(sql).await?;
        let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
        tx.execute("UPDATE cardrun_schema SET version = $1", &[&version]).await?;
        tracing::info!(version, "migrated the postgres schema");
    }
    tx.commit().await?;
    Ok(())
}
