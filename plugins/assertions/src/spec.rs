//! The bound syntax shared by `length`, `word-count`, `latency` and `tokens`:
//! `10` (exact), `5-20` (inclusive range), `>10`, `>=10`, `<10`, `<=10`,
//! a JSON number, or an object `{"min": 5, "max": 20}`.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    Exact(f64),
    Range(f64, f64),
    Greater(f64),
    AtLeast(f64),
    Less(f64),
    AtMost(f64),
}

impl Bound {
    pub fn parse(value: &Value) -> Result<Self, String> {
        match value {
            Value::Number(n) => n.as_f64().map(Bound::Exact).ok_or_else(|| "not a number".into()),
            Value::String(s) => Self::parse_text(s),
            Value::Object(map) => {
                let get = |k: &str| map.get(k).and_then(Value::as_f64);
                match (get("min"), get("max")) {
                    (Some(min), Some(max)) if min <= max => Ok(Bound::Range(min, max)),
                    (Some(min), Some(max)) => Err(format!("min {min} is greater than max {max}")),
                    (Some(min), None) => Ok(Bound::AtLeast(min)),
                    (None, Some(max)) => Ok(Bound::AtMost(max)),
                    (None, None) => Err("an object bound needs `min` and/or `max`".into()),
                }
            }
            other => Err(format!("expected a bound such as 10, \"5-20\", \">=3\" or {{\"min\":1}}, got {other}")),
        }
    }

    fn parse_text(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let num = |s: &str| {
            s.trim().parse::<f64>().map_err(|_| format!("`{text}` is not a valid bound (e.g. 10, 5-20, >=3, <100)"))
        };
        if let Some(rest) = t.strip_prefix(">=") {
            return num(rest).map(Bound::AtLeast);
        }
        if let Some(rest) = t.strip_prefix("<=") {
            return num(rest).map(Bound::AtMost);
        }
        if let Some(rest) = t.strip_prefix('>') {
            return num(rest).map(Bound::Greater);
        }
        if let Some(rest) = t.strip_prefix('<') {
            return num(rest).map(Bound::Less);
        }
        // A range `a-b`; the split skips a leading sign so `-3` stays a number.
        if let Some(pos) = t.get(1..).and_then(|s| s.find('-')).map(|p| p + 1) {
            let (lo, hi) = (num(&t[..pos])?, num(&t[pos + 1..])?);
            if lo > hi {
                return Err(format!("range `{text}` has its lower end above its upper end"));
            }
            return Ok(Bound::Range(lo, hi));
        }
        num(t).map(Bound::Exact)
    }

    pub fn holds(&self, x: f64) -> bool {
        match *self {
            Bound::Exact(v) => x == v,
            Bound::Range(lo, hi) => (lo..=hi).contains(&x),
            Bound::Greater(v) => x > v,
            Bound::AtLeast(v) => x >= v,
            Bound::Less(v) => x < v,
            Bound::AtMost(v) => x <= v,
        }
    }

    pub fn describe(&self) -> String {
        match *self {
            Bound::Exact(v) => format!("exactly {v}"),
            Bound::Range(lo, hi) => format!("between {lo} and {hi}"),
            Bound::Greater(v) => format!("> {v}"),
            Bound::AtLeast(v) => format!(">= {v}"),
            Bound::Less(v) => format!("< {v}"),
            Bound::AtMost(v) => format!("<= {v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_every_form() {
        assert_eq!(Bound::parse(&json!(10)).unwrap(), Bound::Exact(10.0));
        assert_eq!(Bound::parse(&json!("5-20")).unwrap(), Bound::Range(5.0, 20.0));
        assert_eq!(Bound::parse(&json!(">=3")).unwrap(), Bound::AtLeast(3.0));
        assert_eq!(Bound::parse(&json!("<= 4")).unwrap(), Bound::AtMost(4.0));
        assert_eq!(Bound::parse(&json!(">3")).unwrap(), Bound::Greater(3.0));
        assert_eq!(Bound::parse(&json!("<3")).unwrap(), Bound::Less(3.0));
        assert_eq!(Bound::parse(&json!({"min": 2})).unwrap(), Bound::AtLeast(2.0));
        assert!(Bound::parse(&json!("abc")).is_err());
        assert!(Bound::parse(&json!("9-3")).is_err());
        assert!(Bound::parse(&json!([1])).is_err());
    }

    #[test]
    fn bounds_hold_at_edges() {
        assert!(Bound::AtLeast(3.0).holds(3.0));
        assert!(!Bound::Greater(3.0).holds(3.0));
        assert!(Bound::AtMost(3.0).holds(3.0));
        assert!(!Bound::Less(3.0).holds(3.0));
        assert!(Bound::Range(1.0, 2.0).holds(2.0));
    }
}
