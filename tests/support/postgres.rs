//! Fresh PostgreSQL databases for tests, on the machine's server
//! (`CARDRUN_TEST_POSTGRES`, default `postgres://postgres@127.0.0.1:5432`).
//! Each [`PgDatabase`] is a new database named `cardrun_test_<pid>_<n>`,
//! dropped when it goes; databases left by a test process that died are
//! dropped by the next one. No other database is ever touched.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

const PREFIX: &str = "cardrun_test_";

/// The server's base URL, without a database.
fn server() -> String {
    std::env::var("CARDRUN_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// Runs one SQL command on the server's `postgres` database; stdout.
fn psql(sql: &str) -> String {
    let out = Command::new("psql")
        .args([&format!("{}/postgres", server()), "-v", "ON_ERROR_STOP=1", "-Atqc", sql])
        .output()
        .expect("psql runs (install it: apt-get install postgresql-client)");
    assert!(
        out.status.success(),
        "psql {sql:?} failed (is PostgreSQL running on {}?): {}",
        server(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One fresh database, dropped on drop.
pub struct PgDatabase {
    name: String,
}

impl PgDatabase {
    pub fn create() -> Self {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(drop_orphans);
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("{PREFIX}{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        psql(&format!("CREATE DATABASE {name}"));
        Self { name }
    }

    /// `postgres://...` of this database, as `DATABASE_URL` takes it.
    pub fn url(&self) -> String {
        format!("{}/{}", server(), self.name)
    }

    /// Runs one SQL query on this database; its output, rows on lines and
    /// columns separated by `|`.
    pub fn query(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args([&self.url(), "-v", "ON_ERROR_STOP=1", "-Atqc", sql])
            .output()
            .expect("psql runs");
        assert!(out.status.success(), "psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // WITH (FORCE): a host killed by the test may have left sessions.
        let _ = Command::new("psql")
            .args([
                &format!("{}/postgres", server()),
                "-Atqc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

/// Drops this harness's databases whose creating process is gone.
fn drop_orphans() {
    let names = psql(&format!("SELECT datname FROM pg_database WHERE datname LIKE '{PREFIX}%'"));
    for name in names.lines() {
        let pid = name.strip_prefix(PREFIX).and_then(|rest| rest.split('_').next()).and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if pid.is_some() && !alive {
            let _ = Command::new("psql")
                .args([
                    &format!("{}/postgres", server()),
                    "-Atqc",
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                ])
                .output();
        }
    }
}
