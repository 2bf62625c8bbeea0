//! `is-sql` and `contains-sql`: SQL that a real parser (sqlparser) accepts
//! in the chosen dialect, optionally touching allowed tables only.

use std::ops::ControlFlow;

use cardrun_plugin_sdk::{Input, Verdict};
use serde_json::Value;
use sqlparser::ast::{Statement, visit_relations};
use sqlparser::dialect::{self, Dialect};
use sqlparser::parser::Parser;

/// The dialects `databaseType` may name (case-insensitive).
const DIALECTS: &[&str] = &[
    "generic",
    "mysql",
    "postgresql",
    "sqlite",
    "mssql",
    "bigquery",
    "snowflake",
    "hive",
    "redshift",
    "duckdb",
    "clickhouse",
    "ansi",
];

fn dialect(name: &str) -> Option<Box<dyn Dialect>> {
    Some(match name.to_ascii_lowercase().as_str() {
        "generic" => Box::new(dialect::GenericDialect {}),
        "mysql" | "mariadb" => Box::new(dialect::MySqlDialect {}),
        "postgresql" | "postgres" => Box::new(dialect::PostgreSqlDialect {}),
        "sqlite" => Box::new(dialect::SQLiteDialect {}),
        "mssql" | "transactsql" | "sqlserver" => Box::new(dialect::MsSqlDialect {}),
        "bigquery" => Box::new(dialect::BigQueryDialect {}),
        "snowflake" => Box::new(dialect::SnowflakeDialect {}),
        "hive" => Box::new(dialect::HiveDialect {}),
        "redshift" => Box::new(dialect::RedshiftSqlDialect {}),
        "duckdb" => Box::new(dialect::DuckDbDialect {}),
        "clickhouse" => Box::new(dialect::ClickHouseDialect {}),
        "ansi" => Box::new(dialect::AnsiDialect {}),
        _ => return None,
    })
}

/// `value`: nothing, or `{databaseType, allowedTables}` as promptfoo
/// spells them.
struct Options {
    dialect: Box<dyn Dialect>,
    dialect_name: String,
    allowed_tables: Option<Vec<String>>,
}

fn options(input: &Input) -> Result<Options, String> {
    let kind = input.assertion_type();
    let empty = serde_json::Map::new();
    let fields = match input.value() {
        Value::Null => &empty,
        Value::Object(fields) => fields,
        _ => return Err(format!("`{kind}` takes no value or {{databaseType, allowedTables}}")),
    };
    if let Some(unknown) = fields.keys().find(|k| !["databaseType", "allowedTables"].contains(&k.as_str())) {
        return Err(format!("`{kind}`: unknown field `{unknown}` (known: databaseType, allowedTables)"));
    }
    let name = match fields.get("databaseType") {
        None => "generic".to_string(),
        Some(Value::String(name)) => name.clone(),
        Some(_) => return Err(format!("`{kind}`: databaseType must be a string")),
    };
    let dialect =
        dialect(&name).ok_or(format!("`{kind}`: unknown databaseType `{name}` (known: {})", DIALECTS.join(", ")))?;
    let allowed_tables = match fields.get("allowedTables") {
        None => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|v| v.as_str().map(str::to_lowercase).ok_or(format!("`{kind}`: allowedTables must be strings")))
                .collect::<Result<_, _>>()?,
        ),
        Some(_) => return Err(format!("`{kind}`: allowedTables must be a list of table names")),
    };
    Ok(Options { dialect, dialect_name: name, allowed_tables })
}

/// The tables `statements` read or write, lower-cased, as written (schema
/// prefixes kept).
fn tables(statements: &[Statement]) -> Vec<String> {
    let mut found = Vec::new();
    for statement in statements {
        let _ = visit_relations(statement, |relation| {
            found.push(relation.to_string().to_lowercase());
            ControlFlow::<()>::Continue(())
        });
    }
    found.sort();
    found.dedup();
    found
}

fn judge(input: &Input, sql: &str, what: &str) -> Result<Verdict, String> {
    let options = options(input)?;
    let statements = match Parser::parse_sql(options.dialect.as_ref(), sql) {
        Ok(statements) if !statements.is_empty() => statements,
        Ok(_) => return Ok(Verdict::fail(format!("{what} holds no SQL statement"))),
        Err(e) => return Ok(Verdict::fail(format!("{what} is not valid {} SQL: {e}", options.dialect_name))),
    };
    if let Some(allowed) = &options.allowed_tables {
        let used = tables(&statements);
        let refused: Vec<&String> =
            used.iter().filter(|t| !allowed.iter().any(|a| a == *t || t.rsplit('.').next() == Some(a))).collect();
        if !refused.is_empty() {
            return Ok(Verdict::fail(format!("{what} uses tables outside allowedTables: {refused:?}")));
        }
    }
    Ok(Verdict::pass(format!("{what} is valid {} SQL ({} statement(s))", options.dialect_name, statements.len())))
}

/// `is-sql`: the whole output parses as SQL.
pub fn is_sql(input: &Input) -> Result<Verdict, String> {
    judge(input, input.output(), "the output")
}

/// `contains-sql`: a ```sql block (or any fenced block) in the output
/// parses as SQL; without a fence, the whole output must.
pub fn contains_sql(input: &Input) -> Result<Verdict, String> {
    let text = input.output();
    let block =
        text.split("```sql").nth(1).or_else(|| text.split("```").nth(1)).and_then(|rest| rest.split("```").next());
    match block {
        Some(sql) => judge(input, sql, "the SQL block"),
        None => judge(input, text, "the output"),
    }
}

/// The parameters alone.
pub fn check(input: &Input) -> Result<(), String> {
    options(input).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn verdict(kind: &str, output: &str, value: Value) -> Verdict {
        let input = Input::new(kind, output, value);
        if kind == "is-sql" { is_sql(&input) } else { contains_sql(&input) }.unwrap()
    }

    #[test]
    fn valid_and_invalid_sql() {
        assert!(verdict("is-sql", "SELECT id, name FROM users WHERE age > 30", Value::Null).pass);
        assert!(!verdict("is-sql", "SELEC id FROM users", Value::Null).pass);
        assert!(!verdict("is-sql", "Sure, here is the query!", Value::Null).pass);
        let tables = json!({"allowedTables": ["users"]});
        assert!(verdict("is-sql", "SELECT * FROM users", tables.clone()).pass);
        let refused = verdict("is-sql", "SELECT * FROM users JOIN secrets ON users.id = secrets.id", tables);
        assert!(!refused.pass && refused.reason.contains("secrets"), "{refused:?}");
        assert!(verdict("is-sql", "SELECT `a` FROM t", json!({"databaseType": "MySQL"})).pass);
    }

    #[test]
    fn sql_in_prose() {
        let text = "Here you go:\n```sql\nSELECT 1;\n```\nEnjoy.";
        assert!(verdict("contains-sql", text, Value::Null).pass);
        assert!(!verdict("contains-sql", "```sql\nSELECT FROM WHERE\n```", Value::Null).pass);
    }

    #[test]
    fn parameters() {
        assert!(check(&Input::for_check("is-sql", json!({"databaseType": "Oracle9"}))).is_err());
        assert!(check(&Input::for_check("is-sql", json!({"tables": []}))).is_err());
        assert!(check(&Input::for_check("is-sql", json!("mysql"))).is_err());
        assert!(
            check(&Input::for_check("is-sql", json!({"databaseType": "postgres", "allowedTables": ["a"]}))).is_ok()
        );
    }
}
