//! `is-xml` and `contains-xml`: well-formed XML (roxmltree), optionally
//! with required elements.

use cardrun_plugin_sdk::{Input, Verdict};
use serde_json::Value;

/// The required elements: dotted paths from the root element
/// (`order.items.item`), as a list or a comma-separated string.
fn required(input: &Input) -> Result<Vec<Vec<String>>, String> {
    let kind = input.assertion_type();
    let paths: Vec<String> = match input.value() {
        Value::Null => return Ok(Vec::new()),
        Value::String(s) => s.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect(),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or(format!("`{kind}` element paths must be strings")))
            .collect::<Result<_, _>>()?,
        Value::Object(o) => match o.get("requiredElements") {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
            _ => {
                return Err(format!(
                    "`{kind}` takes element paths: a list, a comma-separated string or {{requiredElements: [...]}}"
                ));
            }
        },
        _ => return Err(format!("`{kind}` takes element paths: a list or a comma-separated string")),
    };
    paths
        .iter()
        .map(|p| {
            let parts: Vec<String> = p.split('.').map(str::to_string).collect();
            if parts.iter().any(|s| s.is_empty()) {
                Err(format!("`{kind}`: `{p}` is not a dotted element path"))
            } else {
                Ok(parts)
            }
        })
        .collect()
}

/// Whether the element path exists below (and including) the root.
fn has_path(root: roxmltree::Node<'_, '_>, path: &[String]) -> bool {
    let Some((first, rest)) = path.split_first() else { return true };
    if root.tag_name().name() != first {
        return false;
    }
    let mut level = vec![root];
    for name in rest {
        level = level
            .iter()
            .flat_map(|node| node.children().filter(|c| c.is_element() && c.tag_name().name() == name))
            .collect();
        if level.is_empty() {
            return false;
        }
    }
    true
}

fn judge(input: &Input, xml: &str, what: &str) -> Result<Verdict, String> {
    let paths = required(input)?;
    let document = match roxmltree::Document::parse(xml) {
        Ok(document) => document,
        Err(e) => return Ok(Verdict::fail(format!("{what} is not well-formed XML: {e}"))),
    };
    let root = document.root_element();
    let missing: Vec<String> = paths.iter().filter(|p| !has_path(root, p)).map(|p| p.join(".")).collect();
    Ok(if missing.is_empty() {
        Verdict::pass(format!("{what} is well-formed XML (root <{}>)", root.tag_name().name()))
    } else {
        Verdict::fail(format!("{what} is XML but lacks {}", missing.join(", ")))
    })
}

/// `is-xml`: the whole output (trimmed) is one well-formed XML document.
pub fn is_xml(input: &Input) -> Result<Verdict, String> {
    judge(input, input.output().trim(), "the output")
}

/// `contains-xml`: the output holds an XML document: a fenced ```xml block,
/// else the text from the first `<` to the last `>`.
pub fn contains_xml(input: &Input) -> Result<Verdict, String> {
    let text = input.output();
    let fenced = text.split("```xml").nth(1).and_then(|rest| rest.split("```").next());
    let candidate = match fenced {
        Some(block) => block.trim(),
        None => match (text.find('<'), text.rfind('>')) {
            (Some(start), Some(end)) if start < end => &text[start..=end],
            _ => {
                required(input)?;
                return Ok(Verdict::fail("the output holds no XML"));
            }
        },
    };
    judge(input, candidate, "the XML in the output")
}

/// The parameters alone.
pub fn check(input: &Input) -> Result<(), String> {
    required(input).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn well_formed_documents_and_required_elements() {
        let xml = "<order><items><item>a</item></items><total>3</total></order>";
        assert!(is_xml(&Input::new("is-xml", xml, Value::Null)).unwrap().pass);
        assert!(is_xml(&Input::new("is-xml", xml, json!("order.items.item, order.total"))).unwrap().pass);
        let missing = is_xml(&Input::new("is-xml", xml, json!(["order.customer"]))).unwrap();
        assert!(!missing.pass && missing.reason.contains("order.customer"), "{missing:?}");
        assert!(!is_xml(&Input::new("is-xml", "<a><b></a>", Value::Null)).unwrap().pass);
        assert!(!is_xml(&Input::new("is-xml", "plain words", Value::Null)).unwrap().pass);
    }

    #[test]
    fn xml_inside_prose() {
        let text = "Here it is: <note><to>Ada</to></note> as asked.";
        assert!(contains_xml(&Input::new("contains-xml", text, json!("note.to"))).unwrap().pass);
        let fenced = "```xml\n<a><b/></a>\n```";
        assert!(contains_xml(&Input::new("contains-xml", fenced, Value::Null)).unwrap().pass);
        assert!(!contains_xml(&Input::new("contains-xml", "no markup", Value::Null)).unwrap().pass);
    }

    #[test]
    fn parameters() {
        assert!(check(&Input::for_check("is-xml", json!(3))).is_err());
        assert!(check(&Input::for_check("is-xml", json!("a..b"))).is_err());
        assert!(check(&Input::for_check("is-xml", json!({"requiredElements": ["a.b"]}))).is_ok());
    }
}
