//! Priorities: integers 0..=10 (higher first) or class names.

use super::Invalid;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The default priority.
pub const DEFAULT_PRIORITY: u8 = 5;

/// A validated priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Priority(pub u8);

/// Priority classes (DESIGN.md section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PriorityClass {
    Low,
    Medium,
    High,
    Critical,
}

impl Default for Priority {
    fn default() -> Self {
        Priority(DEFAULT_PRIORITY)
    }
}

impl Priority {
    /// The lowest priority of the critical class.
    pub const CRITICAL_MIN: u8 = 9;

    /// Accepts an integer 0..=10, a class name, or null (the default).
    pub fn from_json(value: Option<&Value>) -> Result<Self, Invalid> {
        match value {
            None | Some(Value::Null) => Ok(Self::default()),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(p) if p <= 10 => Ok(Priority(p as u8)),
                _ => Err(Invalid::new(format!("priority must be an integer from 0 to 10, got {n}"))),
            },
            Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "low" => Ok(Priority(1)),
                "medium" | "normal" => Ok(Priority(5)),
                "high" => Ok(Priority(7)),
                "critical" => Ok(Priority(10)),
                other => other.parse::<u8>().ok().filter(|p| *p <= 10).map(Priority).ok_or_else(|| {
                    Invalid::new(format!("priority must be 0..=10 or low|medium|high|critical, got `{s}`"))
                }),
            },
            Some(other) => {
                Err(Invalid::new(format!("priority must be 0..=10 or low|medium|high|critical, got {other}")))
            }
        }
    }

    pub fn class(self) -> PriorityClass {
        match self.0 {
            0..=2 => PriorityClass::Low,
            3..=5 => PriorityClass::Medium,
            6..=8 => PriorityClass::High,
            Self::CRITICAL_MIN.. => PriorityClass::Critical,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_numbers_names_and_default() {
        assert_eq!(Priority::from_json(None).unwrap(), Priority(5));
        assert_eq!(Priority::from_json(Some(&json!(9))).unwrap().class(), PriorityClass::Critical);
        assert_eq!(Priority::from_json(Some(&json!("high"))).unwrap().class(), PriorityClass::High);
        assert_eq!(Priority::from_json(Some(&json!("low"))).unwrap().class(), PriorityClass::Low);
        assert!(Priority::from_json(Some(&json!(11))).is_err());
        assert!(Priority::from_json(Some(&json!(-1))).is_err());
        assert!(Priority::from_json(Some(&json!("urgent"))).is_err());
        assert!(Priority::from_json(Some(&json!(2.5))).is_err());
    }
}
