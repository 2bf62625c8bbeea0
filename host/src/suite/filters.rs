//! `nunjucksFilters:` as promptfoo writes them: a map of filter name to a
//! JavaScript file whose `module.exports` is the filter function. Each
//! becomes JavaScript whose value is that function, the form a card keeps
//! in its `filters` and the sandbox runs.

use std::collections::BTreeMap;

use serde_json::Value;

use super::files::{FileError, SuiteFiles};
use super::format::{file_ref, kind_of};

/// Why one `nunjucksFilters` entry is not a filter.
#[derive(Debug, thiserror::Error)]
enum FilterError {
    #[error("a filter name is letters, digits and `_`, not starting with a digit")]
    BadName,
    #[error("a filter is a JavaScript file's path, not {0}")]
    NotAPath(&'static str),
    #[error("file {0}")]
    File(#[from] FileError),
}

/// A card's filter named what no template can call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filters: `{0}` is not a filter name (letters, digits and `_`, not starting with a digit)")]
pub struct BadFilterName(pub String);

/// The filters of `raw`, each read through `files`; every problem pushed.
pub fn resolve(raw: &Value, files: &dyn SuiteFiles, problems: &mut Vec<String>) -> BTreeMap<String, String> {
    let Value::Object(map) = raw else {
        problems.push(format!("`nunjucksFilters` must map filter names to file paths, not {}", kind_of(raw)));
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for (name, path) in map {
        match filter(name, path, files) {
            Ok(function) => {
                out.insert(name.clone(), function);
            }
            Err(e) => problems.push(format!("nunjucksFilters.{name}: {e}")),
        }
    }
    out
}

/// Whether `name` can be a filter: what Nunjucks and minijinja both parse
/// after a `|`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
}

fn filter(name: &str, path: &Value, files: &dyn SuiteFiles) -> Result<String, FilterError> {
    if !valid_name(name) {
        return Err(FilterError::BadName);
    }
    let path = path.as_str().ok_or_else(|| FilterError::NotAPath(kind_of(path)))?;
    let path = file_ref(path).unwrap_or(path);
    let module = files.read(path)?;
    Ok(module_function(path, &module))
}

/// A CommonJS module as JavaScript whose value is its exported function.
fn module_function(path: &str, module: &str) -> String {
    let missing = Value::String(format!("`{path}` exports no function (`module.exports = (value, ...args) => ...`)"));
    format!(
        "(function () {{\nconst module = {{ exports: {{}} }};\nconst exports = module.exports;\n{module}\n;\n\
         const filter = module.exports;\n\
         if (typeof filter !== 'function') throw new Error({missing});\n\
         return filter;\n}})()"
    )
}

/// The filters a card may be given through the API: names checked, the
/// JavaScript left to the sandbox's compile check.
pub fn check_names(filters: &BTreeMap<String, String>) -> Result<(), BadFilterName> {
    match filters.keys().find(|name| !valid_name(name)) {
        Some(bad) => Err(BadFilterName(bad.clone())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::UploadedFiles;
    use serde_json::json;

    #[test]
    fn files_become_functions_and_problems_name_the_filter() {
        let files =
            UploadedFiles::new([("f/shout.js".to_string(), "module.exports = (s) => s.toUpperCase();".to_string())])
                .unwrap();
        let mut problems = Vec::new();
        let got = resolve(
            &json!({"shout": "file://f/shout.js", "bad-name": "f/shout.js", "gone": "f/none.js"}),
            &files,
            &mut problems,
        );
        assert_eq!(got.keys().collect::<Vec<_>>(), ["shout"]);
        assert!(got["shout"].contains("s.toUpperCase()") && got["shout"].ends_with("})()"));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems.iter().any(|p| p.starts_with("nunjucksFilters.gone: file") && p.contains("f/none.js")),
            "{problems:?}"
        );
        assert_eq!(check_names(&BTreeMap::from([("1x".to_string(), String::new())])), Err(BadFilterName("1x".into())));
    }
}
