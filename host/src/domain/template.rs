//! Prompt templates in Jinja/Nunjucks syntax (minijinja): `{{ name }}`,
//! filters (`{{ name | upper }}`), conditionals and loops, as promptfoo
//! suites write them.
//!
//! A template whose text is a JSON list of `{role, content}` messages is a
//! chat template: each message's content is a template of its own, so a
//! variable holding quotes or newlines cannot break the JSON.
//!
//! Templates come from clients, so rendering is bounded: minijinja's fuel
//! stops runaway loops, and the output is capped.

use std::collections::HashSet;

use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use serde_json::{Map, Value};

use super::prompt::{CHAT_ROLES, ChatMessage, Prompt};

/// Template instructions one render may run (a 10,000-item loop with a
/// few filters per item fits).
const RENDER_FUEL: u64 = 2_000_000;
/// The longest prompt a template may produce.
pub const MAX_RENDERED_BYTES: usize = 4 * 1024 * 1024;
/// The template name of a text prompt; chat messages are named by index.
const TEXT: &str = "prompt";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template syntax error: {0}")]
    Syntax(String),
    #[error("missing template variable(s): {}", .0.join(", "))]
    Missing(Vec<String>),
    #[error(
        "unknown filter `{0}`: it is not built in, and custom filters (JavaScript files) are not supported yet; \
         built-in filters include upper, lower, title, trim, replace, join, length, default, first, last, tojson, dump"
    )]
    UnknownFilter(String),
    #[error("rendering the template failed: {0}")]
    Render(String),
    #[error("the rendered prompt is longer than {MAX_RENDERED_BYTES} bytes")]
    TooLong,
}

/// A parsed prompt template.
pub struct Template {
    env: Environment<'static>,
    /// The roles of a chat template's messages (template `i` is message
    /// `i`); `None` for a text template.
    roles: Option<Vec<String>>,
    variables: Vec<String>,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template").field("roles", &self.roles).field("variables", &self.variables).finish()
    }
}

impl Template {
    /// Parses `text`: a chat template when it is a JSON list of messages,
    /// otherwise a text template.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        env.set_keep_trailing_newline(true);
        env.set_fuel(Some(RENDER_FUEL));
        // Nunjucks spells `tojson` as `dump`.
        env.add_filter("dump", |v: minijinja::Value| serde_json::to_string(&v).unwrap_or_default());
        let syntax = |e: minijinja::Error| TemplateError::Syntax(describe(&e));
        let mut sources: Vec<(String, String)> = Vec::new();
        let roles = match chat_messages(text)? {
            Some(messages) => {
                let mut roles = Vec::with_capacity(messages.len());
                for (i, m) in messages.into_iter().enumerate() {
                    sources.push((i.to_string(), m.content));
                    roles.push(m.role);
                }
                Some(roles)
            }
            None => {
                sources.push((TEXT.to_string(), text.to_string()));
                None
            }
        };
        let globals: HashSet<String> = env.globals().map(|(name, _)| name.to_string()).collect();
        let mut found: Vec<(usize, usize, String)> = Vec::new();
        for (index, (name, source)) in sources.iter().enumerate() {
            env.add_template_owned(name.clone(), source.clone()).map_err(syntax)?;
            let template = env.get_template(name).map_err(syntax)?;
            for var in template.undeclared_variables(false) {
                if globals.contains(&var) || found.iter().any(|(_, _, v)| *v == var) {
                    continue;
                }
                // Order of first use, as people read the template.
                let at = source.find(var.as_str()).unwrap_or(usize::MAX);
                found.push((index, at, var));
            }
        }
        found.sort();
        Ok(Self { env, roles, variables: found.into_iter().map(|(_, _, v)| v).collect() })
    }

    /// The variables the template uses, in order of first use (loop
    /// variables and `set` names excluded).
    pub fn variables(&self) -> Vec<String> {
        self.variables.clone()
    }

    pub fn is_chat(&self) -> bool {
        self.roles.is_some()
    }

    /// Renders with `vars`; every missing variable is reported at once.
    pub fn render(&self, vars: &Map<String, Value>) -> Result<Prompt, TemplateError> {
        let missing: Vec<String> = self.variables.iter().filter(|v| !vars.contains_key(*v)).cloned().collect();
        if !missing.is_empty() {
            return Err(TemplateError::Missing(missing));
        }
        match &self.roles {
            None => Ok(Prompt::Text(self.render_one(TEXT, vars)?)),
            Some(roles) => {
                let mut messages = Vec::with_capacity(roles.len());
                for (i, role) in roles.iter().enumerate() {
                    messages.push(ChatMessage { role: role.clone(), content: self.render_one(&i.to_string(), vars)? });
                }
                Ok(Prompt::Chat(messages))
            }
        }
    }

    fn render_one(&self, name: &str, vars: &Map<String, Value>) -> Result<String, TemplateError> {
        let template = self.env.get_template(name).map_err(|e| TemplateError::Render(describe(&e)))?;
        let text = template.render(vars).map_err(|e| match e.kind() {
            ErrorKind::UnknownFilter => TemplateError::UnknownFilter(unknown_name(&e)),
            ErrorKind::OutOfFuel => TemplateError::Render("it runs too long (a loop too large?)".into()),
            _ => TemplateError::Render(describe(&e)),
        })?;
        if text.len() > MAX_RENDERED_BYTES {
            return Err(TemplateError::TooLong);
        }
        Ok(text)
    }
}

/// The messages of a chat template, if `text` is one.
fn chat_messages(text: &str) -> Result<Option<Vec<ChatMessage>>, TemplateError> {
    if !text.trim_start().starts_with('[') {
        return Ok(None);
    }
    let Ok(messages) = serde_json::from_str::<Vec<ChatMessage>>(text) else {
        return Ok(None);
    };
    if messages.is_empty() {
        return Ok(None);
    }
    if let Some((i, m)) = messages.iter().enumerate().find(|(_, m)| !CHAT_ROLES.contains(&m.role.as_str())) {
        return Err(TemplateError::Syntax(format!(
            "chat message {} has role `{}`; roles are {}",
            i + 1,
            m.role,
            CHAT_ROLES.join(", ")
        )));
    }
    Ok(Some(messages))
}

/// minijinja's message with its line, without the template's internal name.
fn describe(e: &minijinja::Error) -> String {
    let what = e.detail().map_or_else(|| e.kind().to_string(), |d| format!("{}: {d}", e.kind()));
    match e.line() {
        Some(line) => format!("{what} (line {line})"),
        None => what,
    }
}

/// The filter's name from minijinja's "filter x is unknown" detail.
fn unknown_name(e: &minijinja::Error) -> String {
    let detail = e.detail().unwrap_or_default();
    detail
        .strip_prefix("filter ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or(detail)
        .trim_matches('`')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn text(p: Prompt) -> String {
        match p {
            Prompt::Text(t) => t,
            Prompt::Chat(m) => panic!("chat: {m:?}"),
        }
    }

    #[test]
    fn renders_with_spaces_and_reports_missing() {
        let t = Template::parse("Hi {{name}}, {{ name }} from {{ city }}!").unwrap();
        assert_eq!(t.variables(), vec!["name", "city"]);
        let out = text(t.render(&vars(json!({"name": "NAME", "city": "CITY"}))).unwrap());
        assert_eq!(out, "Hi NAME, NAME from CITY!");
        let err = t.render(&vars(json!({"name": "x"}))).unwrap_err();
        assert_eq!(err, TemplateError::Missing(vec!["city".into()]));
    }

    #[test]
    fn filters_conditionals_and_loops_render_as_nunjucks_does() {
        let t = Template::parse(
            "{{ name | upper }}{% if formal %}, sir{% endif %}:{% for i in items %} {{ loop.index }}.{{ i }}{% endfor %} {{ data | dump }}",
        )
        .unwrap();
        assert_eq!(t.variables(), vec!["name", "formal", "items", "data"]);
        let out =
            t.render(&vars(json!({"name": "ada", "formal": true, "items": ["a", "b"], "data": {"k": 1}}))).unwrap();
        assert_eq!(text(out), "ADA, sir: 1.a 2.b {\"k\":1}");
    }

    #[test]
    fn an_unknown_filter_is_an_error_never_left_in_the_prompt() {
        let t = Template::parse("{{ name | shout }}").unwrap();
        let err = t.render(&vars(json!({"name": "x"}))).unwrap_err();
        assert_eq!(err, TemplateError::UnknownFilter("shout".into()), "{err}");
        assert!(Template::parse("{% if %}").is_err());
    }

    #[test]
    fn chat_templates_render_message_by_message() {
        let t = Template::parse(r#"[{"role":"system","content":"Be {{tone}}."},{"role":"user","content":"{{q}}"}]"#)
            .unwrap();
        assert!(t.is_chat());
        assert_eq!(t.variables(), vec!["tone", "q"]);
        let out = t.render(&vars(json!({"tone": "brief", "q": "say \"hi\"\n"}))).unwrap();
        let Prompt::Chat(m) = out else { panic!("text") };
        assert_eq!(m[1].content, "say \"hi\"\n");
        assert_eq!(m[0].content, "Be brief.");
        assert!(Template::parse(r#"[{"role":"robot","content":"x"}]"#).is_err());
    }

    #[test]
    fn runaway_templates_stop() {
        let t =
            Template::parse("{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}").unwrap();
        assert!(matches!(t.render(&Map::new()), Err(TemplateError::Render(_))));
        let t = Template::parse("{{ 'a' * 100000000 }}").unwrap();
        assert!(t.render(&Map::new()).is_err());
    }
}
