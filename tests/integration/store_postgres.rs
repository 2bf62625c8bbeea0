//! The store contract (`cardrun::store::conformance`, which SQLite passes
//! in the host's unit tests) on a real PostgreSQL, each check on a fresh
//! database; and what only a shared database shows: several hosts
//! migrating at once, and one host's writes read by another.

use std::sync::{Arc, Mutex};

use cardrun::store::conformance::run_all;
use cardrun::store::postgres::PostgresStore;
use cardrun::store::{CardInput, Database, Store, StoreError};
use cardrun_tests::postgres::PgDatabase;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conforms() {
    // Kept until the end: each database is dropped with its guard.
    let databases: Arc<Mutex<Vec<PgDatabase>>> = Arc::default();
    run_all(|| {
        let db = PgDatabase::create();
        let url = db.url();
        databases.lock().unwrap().push(db);
        async move { Arc::new(PostgresStore::connect(&url).await.expect("postgres")) as Arc<dyn Store> }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_starting_at_once_migrate_once_and_share_their_writes() {
    let db = PgDatabase::create();
    let url = db.url();
    let connects = (0..4).map(|_| PostgresStore::connect(&url));
    let stores: Vec<PostgresStore> = futures_util::future::try_join_all(connects).await.expect("all connect");
    assert_eq!(db.query("SELECT version FROM cardrun_schema"), "6", "every migration, once");

    let card = CardInput {
        tenant_id: None,
        title: "shared".into(),
        description: String::new(),
        prompt_template: "p".into(),
        variables: vec![],
        filters: Default::default(),
    };
    let created = stores[0].create_card(&card).await.unwrap();
    assert_eq!(stores[3].card(created.id).await.unwrap().map(|c| c.title), Some("shared".into()));
    assert!(stores[2].delete_card(created.id).await.unwrap());
    assert!(stores[1].card(created.id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_newer_schema_or_a_bad_url_is_a_clear_error() {
    let db = PgDatabase::create();
    PostgresStore::connect(&db.url()).await.expect("migrates");
    db.query("UPDATE cardrun_schema SET version = 99");
    let newer = PostgresStore::connect(&db.url()).await.err().expect("refused");
    assert!(matches!(newer, StoreError::Config(_)) && newer.to_string().contains("upgrade cardrun"), "{newer}");

    let bad = Database::from_url("mysql://localhost/x").expect_err("refused");
    assert!(bad.to_string().contains("postgres://"), "{bad}");
    let unreachable = cardrun::store::open(&Database::Postgres("postgres://nobody@127.0.0.1:1/none".into()))
        .await
        .err()
        .expect("no server there");
    assert!(unreachable.is_unavailable() || matches!(unreachable, StoreError::Postgres(_)), "{unreachable}");
}
