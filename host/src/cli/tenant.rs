//! `cardrun tenant` and `cardrun key`: tenants and their API keys, written
//! straight to the store the servers use (DATABASE_URL, DATABASE_PATH or
//! `--database`). Running servers see a change within a second.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use cardrun::store::{self, Database, Store};
use cardrun::tenants;

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant. From then on the API needs keys.
    Create { name: String },
    /// List the tenants.
    List,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create an API key for TENANT; the key is printed once, and only its
    /// hash is kept.
    Create { tenant: String },
    /// Revoke a key by its id (the part after `crd_`), at once.
    Revoke { key_id: String },
}

async fn open(database: Option<PathBuf>) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    let database = match database {
        Some(path) => Database::Sqlite(path),
        None => Database::from_env()?,
    };
    store::open(&database).await.with_context(|| format!("opening {}", database.describe()))
}

pub async fn tenant(command: TenantCommand, database: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let store = open(database).await?;
    match command {
        TenantCommand::Create { name } => {
            let tenants::Created { tenant, adopted: (cards, executions) } =
                tenants::create_tenant(store.as_ref(), &name).await?;
            println!(
                "tenant {} created (id {}); make a key with `cardrun key create {}`",
                tenant.name, tenant.id, tenant.name
            );
            if cards + executions > 0 {
                println!("it owns the {cards} card(s) and {executions} execution(s) made before keys were on");
            }
        }
        TenantCommand::List => {
            for tenant in store.tenants().await? {
                println!("{}\t{}\t{}", tenant.id, tenant.name, tenant.created_at.to_rfc3339());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn key(command: KeyCommand, database: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let store = open(database).await?;
    match command {
        KeyCommand::Create { tenant } => {
            let key = tenants::create_key(store.as_ref(), &tenant).await?;
            eprintln!("key {} for tenant {tenant}; it is shown once, keep it now:", key.id);
            println!("{}", key.secret);
        }
        KeyCommand::Revoke { key_id } => {
            tenants::revoke_key(store.as_ref(), &key_id).await?;
            println!("key {key_id} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}
