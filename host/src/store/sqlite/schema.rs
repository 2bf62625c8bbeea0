//! Schema migrations, applied in order and tracked by `user_version`.

use rusqlite::Connection;

use super::StoreResult;

const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    "CREATE TABLE prompt_cards (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        title TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        prompt_template TEXT NOT NULL,
        variables TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE test_cases (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        prompt_card_id INTEGER NOT NULL REFERENCES prompt_cards(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        input_variables TEXT NOT NULL,
        expected_output TEXT,
        assertions TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX test_cases_by_card ON test_cases(prompt_card_id);
    CREATE TABLE executions (
        execution_id TEXT PRIMARY KEY,
        prompt_card_id INTEGER NOT NULL,
        test_case_ids TEXT NOT NULL,
        model TEXT NOT NULL,
        configuration TEXT NOT NULL,
        priority INTEGER NOT NULL,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        started_at TEXT,
        completed_at TEXT,
        jobs TEXT NOT NULL
    );
    CREATE INDEX executions_by_status ON executions(status);
    CREATE TABLE test_results (
        execution_id TEXT NOT NULL,
        test_case_id INTEGER NOT NULL,
        status TEXT NOT NULL,
        payload TEXT NOT NULL,
        PRIMARY KEY (execution_id, test_case_id)
    );",
    // 2: assertion plugins uploaded through the API, reloaded at start in
    // upload order (a later upload of the same types wins).
    "CREATE TABLE plugins (
        hash TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        bytes BLOB NOT NULL,
        uploaded_at TEXT NOT NULL
    );",
    // 3: an unfinished execution's jobs, one row each (in queue order by
    // rowid) instead of one JSON array in `executions.jobs`: queuing a large
    // execution no longer builds the whole array as one string, and a
    // finished execution's jobs are deleted. Jobs of unfinished executions
    // move over; `executions.jobs` stays, always `[]`.
    "CREATE TABLE execution_jobs (
        execution_id TEXT NOT NULL,
        test_case_id INTEGER NOT NULL,
        job TEXT NOT NULL,
        UNIQUE (execution_id, test_case_id)
    );
    INSERT INTO execution_jobs (execution_id, test_case_id, job)
        SELECT e.execution_id, json_extract(j.value, '$.test_case_id'), j.value
        FROM executions e, json_each(e.jobs) j
        WHERE e.status IN ('queued', 'running')
        ORDER BY e.created_at, j.key;
    UPDATE executions SET jobs = '[]'",
    // 4: evaluations, a suite's (prompt, provider) pairs run as one group;
    // each pair is an execution, so only the grouping is stored here.
    "CREATE TABLE evaluations (
        evaluation_id TEXT PRIMARY KEY,
        description TEXT NOT NULL,
        pairs TEXT NOT NULL,
        created_at TEXT NOT NULL
    );",
    // 5: a test's `threshold`: with one, the test passes when the weighted
    // score of its assertions reaches it (promptfoo's semantics).
    "ALTER TABLE test_cases ADD COLUMN threshold REAL;",
    // 6: tenants and their API keys (issue 14). Only a key's SHA-256 is
    // kept; a revoked key stays, with the time, so its id is not reused.
    "CREATE TABLE tenants (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    );
    CREATE TABLE api_keys (
        key_id TEXT PRIMARY KEY,
        tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        key_hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        revoked_at TEXT
    );",
    // 7: what each tenant owns (issue 14): cards (their test cases follow),
    // executions (their results follow) and evaluations. NULL: made while
    // keys were off; the first tenant created adopts those rows.
    "ALTER TABLE prompt_cards ADD COLUMN tenant_id INTEGER;
    ALTER TABLE executions ADD COLUMN tenant_id INTEGER;
    ALTER TABLE evaluations ADD COLUMN tenant_id INTEGER;
    CREATE INDEX prompt_cards_by_tenant ON prompt_cards(tenant_id, id);",
    // 8: uploaded plugins belong to a tenant (issue 14: type names are per
    // tenant), 0 for shared ones (uploads made without a key). Two tenants
    // may upload the same bytes, so the key becomes (owner, hash); SQLite
    // cannot change a primary key in place, hence the copy. Existing
    // uploads stay shared.
    "CREATE TABLE plugins_owned (
        owner INTEGER NOT NULL DEFAULT 0,
        hash TEXT NOT NULL,
        name TEXT NOT NULL,
        bytes BLOB NOT NULL,
        uploaded_at TEXT NOT NULL,
        PRIMARY KEY (owner, hash)
    );
    INSERT INTO plugins_owned (owner, hash, name, bytes, uploaded_at)
        SELECT 0, hash, name, bytes, uploaded_at FROM plugins ORDER BY uploaded_at, rowid;
    DROP TABLE plugins;
    ALTER TABLE plugins_owned RENAME TO plugins;",
    // 9: model adapters uploaded by tenants (issue 14): the component, and
    // its manifest (config, allowed hosts, secret headers) as JSON. The
    // secrets are kept here because hosts and workers must add them to the
    // adapter's requests; they are never returned by the API.
    "CREATE TABLE adapters (
        owner INTEGER NOT NULL,
        name TEXT NOT NULL,
        hash TEXT NOT NULL,
        bytes BLOB NOT NULL,
        manifest TEXT NOT NULL,
        uploaded_at TEXT NOT NULL,
        PRIMARY KEY (owner, name)
    );",
    // 10: a test's `transform` (issue 12: promptfoo's `options.transform`),
    // JavaScript applied to the model's output before its assertions, and
    // a card's custom template `filters` (a suite's `nunjucksFilters`), a
    // JSON object of name -> JavaScript function. NULL: none, as for every
    // test and card written before.
    "ALTER TABLE test_cases ADD COLUMN transform TEXT;
    ALTER TABLE prompt_cards ADD COLUMN filters TEXT;",
];

pub fn migrate(conn: &Connection) -> StoreResult<()> {
    let current: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        conn.execute_batch(&format!("BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;", i + 1))?;
    }
    Ok(())
}
