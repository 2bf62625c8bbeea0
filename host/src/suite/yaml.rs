//! YAML from clients, parsed with bounds the parser lacks.
//!
//! libyaml (under `serde_yaml_ng`) reads the whole document before serde's
//! recursion limit of 128 applies, and its scanner is quadratic in the
//! depth of flow collections: 100,000 `[` in a 200 KB upload held a
//! request for 46 s, and `{a: ` nested as deep for 73 s (debug build).
//! Deeper than the limit can never deserialise, so it is refused before
//! the parser starts, in one linear pass. Alias expansion (billion
//! laughs) is already bounded by `serde_yaml_ng` ("repetition limit
//! exceeded").

use serde::de::DeserializeOwned;

/// Deepest nesting of flow collections accepted: serde's own recursion
/// limit, so nothing that could parse is refused.
pub const MAX_FLOW_DEPTH: usize = 128;

/// Why a YAML text was not read.
#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    #[error("YAML nested more than {MAX_FLOW_DEPTH} levels deep in `[` and `{{` (line {line})")]
    TooDeep { line: usize },
    #[error(transparent)]
    Parse(#[from] serde_yaml_ng::Error),
}

/// `serde_yaml_ng::from_str`, refusing flow nesting deeper than
/// [`MAX_FLOW_DEPTH`] first.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    if let Some(line) = too_deep_at(text) {
        return Err(YamlError::TooDeep { line });
    }
    Ok(serde_yaml_ng::from_str(text)?)
}

/// The line where flow collections first nest deeper than the limit.
/// Brackets inside quoted scalars and comments do not count; a quote only
/// opens a scalar where one can start, so `don't` in plain text does not
/// hide what follows. Unbalanced brackets in plain or block text can only
/// over-count, which real documents never come near.
fn too_deep_at(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut line = 1usize;
    let mut prev = '\n';
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            '[' | '{' => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Some(line);
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            '"' | '\'' if starts_scalar(prev) => {
                let mut escaped = false;
                for q in chars.by_ref() {
                    if q == '\n' {
                        line += 1;
                    }
                    if c == '"' && q == '\\' && !escaped {
                        escaped = true;
                        continue;
                    }
                    if q == c && !escaped {
                        break;
                    }
                    escaped = false;
                }
            }
            '#' if prev.is_whitespace() => {
                if chars.by_ref().any(|q| q == '\n') {
                    line += 1;
                }
                prev = '\n';
                continue;
            }
            _ => {}
        }
        prev = c;
    }
    None
}

fn starts_scalar(prev: char) -> bool {
    prev.is_whitespace() || matches!(prev, '[' | '{' | ',' | ':' | '-' | '?')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_up_to_the_limit_parses_and_deeper_is_refused_with_its_line() {
        let ok = format!("a: {}1{}", "[".repeat(MAX_FLOW_DEPTH - 1), "]".repeat(MAX_FLOW_DEPTH - 1));
        assert!(from_str::<serde_json::Value>(&ok).is_ok());
        let deep = format!("a: 1\nb: {}1{}", "[".repeat(MAX_FLOW_DEPTH + 1), "]".repeat(MAX_FLOW_DEPTH + 1));
        let err = from_str::<serde_json::Value>(&deep).unwrap_err();
        assert!(matches!(err, YamlError::TooDeep { line: 2 }), "{err}");
        let maps = format!("a: {}", "{b: ".repeat(100_000));
        assert!(matches!(from_str::<serde_json::Value>(&maps), Err(YamlError::TooDeep { line: 1 })));
    }

    #[test]
    fn brackets_in_quotes_and_comments_do_not_count() {
        let many = "[".repeat(MAX_FLOW_DEPTH * 2);
        for text in [
            format!("a: \"{many}\""),
            format!("a: '{many}'"),
            format!("a: \"\\\"{many}\""),
            format!("a: 1 # {many}\nb: 2"),
        ] {
            assert!(from_str::<serde_json::Value>(&text).is_ok(), "{text}");
        }
        // A quote inside a plain word does not open a string.
        let hidden = format!("a: don't\nb: {}", "[".repeat(MAX_FLOW_DEPTH + 1));
        assert!(matches!(from_str::<serde_json::Value>(&hidden), Err(YamlError::TooDeep { .. })));
    }
}
