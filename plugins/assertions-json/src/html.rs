//! `is-html` and `contains-html`: HTML found by a tag scan, not a browser's
//! parser (browsers accept any text; what is asked is whether the model
//! wrote markup). Known element names only, so `a < b > c` is not HTML.

use cardrun_plugin_sdk::{Input, Verdict};

/// HTML elements that count as markup.
const ELEMENTS: &[&str] = &[
    "a",
    "abbr",
    "address",
    "article",
    "aside",
    "audio",
    "b",
    "blockquote",
    "body",
    "br",
    "button",
    "canvas",
    "caption",
    "code",
    "col",
    "colgroup",
    "dd",
    "details",
    "div",
    "dl",
    "dt",
    "em",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "head",
    "header",
    "hr",
    "html",
    "i",
    "iframe",
    "img",
    "input",
    "label",
    "legend",
    "li",
    "link",
    "main",
    "meta",
    "nav",
    "ol",
    "option",
    "p",
    "pre",
    "section",
    "select",
    "small",
    "span",
    "strong",
    "style",
    "sub",
    "summary",
    "sup",
    "table",
    "tbody",
    "td",
    "textarea",
    "tfoot",
    "th",
    "thead",
    "title",
    "tr",
    "u",
    "ul",
    "video",
];

/// Elements with no closing tag.
const VOID: &[&str] = &["br", "col", "hr", "img", "input", "link", "meta"];

/// A tag found in the text: its element name and whether it closes.
struct Tag {
    name: String,
    closing: bool,
    self_closing: bool,
}

/// The HTML tags of known elements in `text`, in order.
fn tags(text: &str) -> Vec<Tag> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        let Some(end) = rest.find('>') else { break };
        let inside = &rest[..end];
        rest = &rest[end + 1..];
        if inside.starts_with('!') || inside.starts_with('?') {
            continue; // doctype, comments, processing instructions
        }
        let closing = inside.starts_with('/');
        let body = inside.trim_start_matches('/');
        let name: String =
            body.chars().take_while(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
        if ELEMENTS.contains(&name.as_str()) {
            out.push(Tag { name, closing, self_closing: inside.trim_end().ends_with('/') });
        }
    }
    out
}

/// Why the tags do not nest, if they do not.
fn nesting_problem(tags: &[Tag]) -> Option<String> {
    let mut open: Vec<&str> = Vec::new();
    for tag in tags {
        if VOID.contains(&tag.name.as_str()) || tag.self_closing {
            continue;
        }
        if !tag.closing {
            open.push(&tag.name);
            continue;
        }
        // Elements whose end tag may be left out (`<li>`, `<p>`...) are
        // closed by the end tag of what holds them.
        match open.iter().rposition(|name| *name == tag.name) {
            Some(at) => open.truncate(at),
            None => return Some(format!("`</{}>` closes nothing", tag.name)),
        }
    }
    None
}

/// `is-html`: the trimmed output starts and ends with a tag, holds known
/// elements, and its end tags close what was opened.
pub fn is_html(input: &Input) -> Result<Verdict, String> {
    check(input)?;
    let text = input.output().trim();
    if !(text.starts_with('<') && text.ends_with('>')) {
        return Ok(Verdict::fail("the output does not start and end with a tag"));
    }
    let found = tags(text);
    if found.is_empty() {
        return Ok(Verdict::fail("the output has no HTML elements"));
    }
    Ok(match nesting_problem(&found) {
        None => Verdict::pass(format!("the output is HTML ({} tags)", found.len())),
        Some(problem) => Verdict::fail(format!("the output's tags do not nest: {problem}")),
    })
}

/// `contains-html`: the output holds at least one HTML element's tag.
pub fn contains_html(input: &Input) -> Result<Verdict, String> {
    check(input)?;
    let found = tags(input.output());
    Ok(match found.first() {
        Some(tag) => Verdict::pass(format!("the output holds HTML (<{}> and {} more tags)", tag.name, found.len() - 1)),
        None => Verdict::fail("the output holds no HTML element"),
    })
}

/// Neither type takes a value.
pub fn check(input: &Input) -> Result<(), String> {
    if input.value().is_null() { Ok(()) } else { Err(format!("`{}` takes no value", input.assertion_type())) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn judge(kind: &str, text: &str) -> bool {
        let input = Input::new(kind, text, Value::Null);
        if kind == "is-html" { is_html(&input) } else { contains_html(&input) }.unwrap().pass
    }

    #[test]
    fn markup_and_prose() {
        assert!(judge("is-html", "<div class=\"x\"><p>Hi<br>there</p><img src=a.png /></div>"));
        assert!(judge("is-html", "<!DOCTYPE html><html><body><ul><li>a<li>b</ul></body></html>"));
        assert!(!judge("is-html", "<div><p>Hi</div></span>"));
        assert!(!judge("is-html", "Here is HTML: <p>hi</p>"));
        assert!(!judge("is-html", "<notatag></notatag>"));
        assert!(judge("contains-html", "Here is HTML: <p>hi</p>"));
        assert!(!judge("contains-html", "if a < b and c > d"));
        assert!(is_html(&Input::new("is-html", "<p/>", Value::Bool(true))).is_err());
    }
}
