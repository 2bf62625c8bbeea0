//! `{{ name }}` templates.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use regex::Regex;

static PLACEHOLDER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}").expect("static regex is valid"));

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("missing template variable(s): {}", .0.join(", "))]
    Missing(Vec<String>),
}

/// A parsed prompt template.
#[derive(Debug, Clone)]
pub struct Template<'a> {
    text: &'a str,
}

impl<'a> Template<'a> {
    pub fn new(text: &'a str) -> Self {
        Self { text }
    }

    /// The distinct variable names, in order of first use.
    pub fn variables(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        PLACEHOLDER
            .captures_iter(self.text)
            .filter_map(|c| c.get(1).map(|m| m.as_str().to_string()))
            .filter(|name| seen.insert(name.clone()))
            .collect()
    }

    /// Renders with `lookup`; every missing variable is reported at once.
    pub fn render(&self, lookup: impl Fn(&str) -> Option<String>) -> Result<String, TemplateError> {
        let mut missing = Vec::new();
        let rendered = PLACEHOLDER.replace_all(self.text, |caps: &regex::Captures<'_>| {
            let name = &caps[1];
            lookup(name).unwrap_or_else(|| {
                if !missing.iter().any(|m| m == name) {
                    missing.push(name.to_string());
                }
                String::new()
            })
        });
        if missing.is_empty() { Ok(rendered.into_owned()) } else { Err(TemplateError::Missing(missing)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_with_spaces_and_reports_missing() {
        let t = Template::new("Hi {{name}}, {{ name }} from {{ city }}!");
        assert_eq!(t.variables(), vec!["name", "city"]);
        let out = t.render(|k| (k != "zzz").then(|| k.to_uppercase())).unwrap();
        assert_eq!(out, "Hi NAME, NAME from CITY!");
        let err = t.render(|k| (k == "name").then(|| "x".into())).unwrap_err();
        assert_eq!(err, TemplateError::Missing(vec!["city".into()]));
    }
}
