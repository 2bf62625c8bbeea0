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
//!
//! Custom filters (a card's `filters`, a suite's `nunjucksFilters`) are
//! JavaScript, which runs in the sandbox, asynchronously; minijinja calls
//! filters synchronously. So a render that meets a custom filter call whose
//! result is not known yet records the call and yields a placeholder
//! ([`Rendering::Needs`]); the caller runs the calls, hands the results to
//! [`Template::learn`] and renders again. Results are kept for the
//! template's life, so a filter called with the same arguments by many
//! test cases runs once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

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
/// What a custom filter returns while its result is unknown: control
/// characters only, so that case, trim and escape filters keep it whole
/// and a later custom filter can tell its input is not real yet.
const PENDING: &str = "\u{1}\u{2}\u{3}\u{1}";
/// Custom filter results kept per template; past this the memo starts
/// afresh (a 100,000-test plan with a filter of each test's own vars).
const MAX_REMEMBERED: usize = 10_000;

/// One call of a custom filter: its name, and its arguments as JSON (the
/// filtered value first).
#[derive(Debug, Clone, PartialEq)]
pub struct FilterCall {
    pub filter: String,
    pub arguments: Vec<Value>,
}

impl FilterCall {
    fn key(&self) -> String {
        serde_json::to_string(&(&self.filter, &self.arguments)).unwrap_or_default()
    }
}

/// The outcome of one render.
#[derive(Debug, Clone, PartialEq)]
pub enum Rendering {
    Done(Prompt),
    /// Custom filter calls to run before rendering again.
    Needs(Vec<FilterCall>),
}

/// Custom filter results known so far, and the calls the last render
/// could not answer.
#[derive(Default)]
struct FilterMemo {
    known: HashMap<String, Value>,
    pending: Vec<FilterCall>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template syntax error: {0}")]
    Syntax(String),
    #[error("missing template variable(s): {}", .0.join(", "))]
    Missing(Vec<String>),
    #[error(
        "unknown filter `{0}`: it is not built in and not a custom filter of this card (a suite's `nunjucksFilters`, a card's `filters`); \
         built-in filters include upper, lower, title, trim, replace, join, length, default, first, last, tojson, dump"
    )]
    UnknownFilter(String),
    #[error("rendering the template failed: {0}")]
    Render(String),
    #[error("the template calls custom filter(s) {}, which run in the sandbox; render it where one is at hand", .0.join(", "))]
    FiltersPending(Vec<String>),
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
    /// Results of the custom filters, shared with their closures in `env`.
    /// Locked only inside a filter call or between renders, never across
    /// an `.await`.
    memo: Arc<Mutex<FilterMemo>>,
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
        Self::parse_with_filters(text, &[])
    }

    /// [`Template::parse`], with the custom filters `filters` (names), whose
    /// results come from the caller (see [`Rendering::Needs`]).
    pub fn parse_with_filters(text: &str, filters: &[String]) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        let memo = Arc::new(Mutex::new(FilterMemo::default()));
        for name in filters {
            let (memo, filter) = (memo.clone(), name.clone());
            env.add_filter(
                name.clone(),
                move |value: minijinja::Value, rest: minijinja::value::Rest<minijinja::Value>| {
                    custom_filter(&memo, &filter, value, rest.0)
                },
            );
        }
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
        Ok(Self { env, roles, variables: found.into_iter().map(|(_, _, v)| v).collect(), memo })
    }

    /// The variables the template uses, in order of first use (loop
    /// variables and `set` names excluded).
    pub fn variables(&self) -> Vec<String> {
        self.variables.clone()
    }

    pub fn is_chat(&self) -> bool {
        self.roles.is_some()
    }

    /// Renders with `vars`; every missing variable is reported at once. A
    /// template whose custom filters need running is
    /// [`TemplateError::FiltersPending`]: see [`Template::render_step`].
    pub fn render(&self, vars: &Map<String, Value>) -> Result<Prompt, TemplateError> {
        match self.render_step(vars)? {
            Rendering::Done(prompt) => Ok(prompt),
            Rendering::Needs(calls) => {
                let mut names: Vec<String> = calls.into_iter().map(|c| c.filter).collect();
                names.dedup();
                Err(TemplateError::FiltersPending(names))
            }
        }
    }

    /// Renders with `vars`, or says which custom filter calls it needs
    /// first.
    pub fn render_step(&self, vars: &Map<String, Value>) -> Result<Rendering, TemplateError> {
        let missing: Vec<String> = self.variables.iter().filter(|v| !vars.contains_key(*v)).cloned().collect();
        if !missing.is_empty() {
            return Err(TemplateError::Missing(missing));
        }
        self.lock().pending.clear();
        let rendered = match &self.roles {
            None => self.render_one(TEXT, vars).map(Prompt::Text),
            Some(roles) => roles
                .iter()
                .enumerate()
                .map(|(i, role)| {
                    Ok(ChatMessage { role: role.clone(), content: self.render_one(&i.to_string(), vars)? })
                })
                .collect::<Result<Vec<_>, TemplateError>>()
                .map(Prompt::Chat),
        };
        let pending = std::mem::take(&mut self.lock().pending);
        // With calls pending, an error may come from a placeholder: the
        // render after them says.
        match (rendered, pending.is_empty()) {
            (_, false) => Ok(Rendering::Needs(pending)),
            (rendered, true) => rendered.map(Rendering::Done),
        }
    }

    /// Keeps `result` as the answer to `call`, for the next renders.
    pub fn learn(&self, call: &FilterCall, result: Value) {
        let mut memo = self.lock();
        if memo.known.len() >= MAX_REMEMBERED {
            memo.known.clear();
        }
        memo.known.insert(call.key(), result);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FilterMemo> {
        // The memo holds plain data: a panic elsewhere leaves it usable.
        self.memo.lock().unwrap_or_else(PoisonError::into_inner)
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

/// A custom filter's body inside minijinja: the known result, or the
/// placeholder and the call recorded. A call whose input is a placeholder
/// (filters chained) waits for the next render.
fn custom_filter(
    memo: &Mutex<FilterMemo>,
    filter: &str,
    value: minijinja::Value,
    rest: Vec<minijinja::Value>,
) -> Result<minijinja::Value, minijinja::Error> {
    let mut arguments = Vec::with_capacity(rest.len().saturating_add(1));
    for argument in std::iter::once(value).chain(rest) {
        let json = serde_json::to_value(&argument)
            .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
        arguments.push(json);
    }
    if arguments.iter().any(holds_pending) {
        return Ok(minijinja::Value::from(PENDING));
    }
    let call = FilterCall { filter: filter.to_string(), arguments };
    let mut memo = memo.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = memo.known.get(&call.key()) {
        return Ok(minijinja::Value::from_serialize(known));
    }
    if !memo.pending.contains(&call) {
        memo.pending.push(call);
    }
    Ok(minijinja::Value::from(PENDING))
}

/// Whether a placeholder is anywhere in `value`.
fn holds_pending(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains(PENDING),
        Value::Array(items) => items.iter().any(holds_pending),
        Value::Object(fields) => fields.values().any(holds_pending),
        _ => false,
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
    fn custom_filters_are_asked_for_then_rendered_with_their_results() {
        let names = ["shout".to_string(), "wrap".to_string()];
        let t = Template::parse_with_filters("{{ name | shout | wrap('[', ']') }} {{ city | shout }}", &names).unwrap();
        let v = vars(json!({"name": "ada", "city": "oslo"}));
        let Rendering::Needs(first) = t.render_step(&v).unwrap() else { panic!("rendered without results") };
        // `wrap` waits for `shout`'s result; both `shout` calls come first.
        let called: Vec<(&str, &Value)> = first.iter().map(|c| (c.filter.as_str(), &c.arguments[0])).collect();
        assert_eq!(called, [("shout", &json!("ada")), ("shout", &json!("oslo"))]);
        for call in &first {
            t.learn(call, json!(call.arguments[0].as_str().unwrap().to_uppercase()));
        }
        let Rendering::Needs(second) = t.render_step(&v).unwrap() else { panic!("wrap not asked for") };
        assert_eq!(
            second,
            [FilterCall { filter: "wrap".into(), arguments: vec![json!("ADA"), json!("["), json!("]")] }]
        );
        t.learn(&second[0], json!("[ADA]"));
        assert_eq!(t.render_step(&v).unwrap(), Rendering::Done(Prompt::Text("[ADA] OSLO".into())));
        assert_eq!(t.render(&v).unwrap(), Prompt::Text("[ADA] OSLO".into()));
        // Another test case with a new value asks again; the plain render says why it cannot.
        let err = t.render(&vars(json!({"name": "bo", "city": "oslo"}))).unwrap_err();
        assert!(matches!(err, TemplateError::FiltersPending(ref n) if n == &["shout".to_string()]), "{err}");
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
