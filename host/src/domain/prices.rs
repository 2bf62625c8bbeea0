//! What model calls cost: a price per token, from the provider's
//! `config.cost`, the host's prices file, or the built-in table of common
//! OpenAI and Anthropic models.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Invalid, TokenUsage};

/// US dollars per token.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Per prompt (input) token.
    pub input: f64,
    /// Per completion (output) token.
    pub output: f64,
}

impl Price {
    /// Per million tokens, as price lists are written.
    pub const fn per_million(input: f64, output: f64) -> Self {
        Self { input: input / 1e6, output: output / 1e6 }
    }

    /// A price must be finite and not negative.
    pub fn validate(&self) -> Result<(), Invalid> {
        for (name, v) in [("input", self.input), ("output", self.output)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Invalid::new(format!(
                    "price `{name}` must be a number of dollars per token, 0 or more, not {v}"
                )));
            }
        }
        Ok(())
    }

    /// What `tokens` cost at this price.
    pub fn cost(&self, tokens: TokenUsage) -> f64 {
        f64::from(tokens.prompt) * self.input + f64::from(tokens.completion) * self.output
    }
}

/// Published list prices (USD per million tokens, input / output) of common
/// models, as of 2025. A model matches its longest prefix here, so dated
/// versions (`gpt-4o-2024-08-06`, `claude-sonnet-4-5-20250929`) take their
/// family's price. Local models (Ollama) have none: their cost is unknown,
/// not zero.
const BUILTIN: &[(&str, &str, f64, f64)] = &[
    ("openai", "gpt-5", 1.25, 10.0),
    ("openai", "gpt-5-mini", 0.25, 2.0),
    ("openai", "gpt-5-nano", 0.05, 0.40),
    ("openai", "gpt-4.1", 2.0, 8.0),
    ("openai", "gpt-4.1-mini", 0.40, 1.60),
    ("openai", "gpt-4.1-nano", 0.10, 0.40),
    ("openai", "gpt-4o", 2.50, 10.0),
    ("openai", "gpt-4o-mini", 0.15, 0.60),
    ("openai", "gpt-4-turbo", 10.0, 30.0),
    ("openai", "gpt-4", 30.0, 60.0),
    ("openai", "gpt-3.5-turbo", 0.50, 1.50),
    ("openai", "o1", 15.0, 60.0),
    ("openai", "o1-mini", 1.10, 4.40),
    ("openai", "o3", 2.0, 8.0),
    ("openai", "o3-mini", 1.10, 4.40),
    ("openai", "o4-mini", 1.10, 4.40),
    ("openai", "text-embedding-3-small", 0.02, 0.0),
    ("openai", "text-embedding-3-large", 0.13, 0.0),
    ("openai", "text-embedding-ada-002", 0.10, 0.0),
    ("anthropic", "claude-opus-4", 15.0, 75.0),
    ("anthropic", "claude-sonnet-4", 3.0, 15.0),
    ("anthropic", "claude-haiku-4", 1.0, 5.0),
    ("anthropic", "claude-3-7-sonnet", 3.0, 15.0),
    ("anthropic", "claude-3-5-sonnet", 3.0, 15.0),
    ("anthropic", "claude-3-5-haiku", 0.80, 4.0),
    ("anthropic", "claude-3-opus", 15.0, 75.0),
    ("anthropic", "claude-3-haiku", 0.25, 1.25),
];

/// Prices by model: the built-in table, with the host's prices file over it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceTable {
    /// `adapter:model` or a bare model name (any adapter) -> price.
    overrides: BTreeMap<String, Price>,
}

impl PriceTable {
    /// Reads a prices file: a YAML or JSON map from `adapter:model` (or a
    /// bare model name, for any adapter) to `{input, output}` in US dollars
    /// per million tokens.
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct PerMillion {
            input: f64,
            output: f64,
        }
        let raw: BTreeMap<String, PerMillion> =
            serde_yaml_ng::from_str(text).map_err(|e| Invalid::new(format!("prices file: {e}")))?;
        let mut overrides = BTreeMap::new();
        for (model, p) in raw {
            let price = Price::per_million(p.input, p.output);
            price.validate().map_err(|e| Invalid::new(format!("prices file, `{model}`: {}", e.0)))?;
            overrides.insert(model, price);
        }
        Ok(Self { overrides })
    }

    /// The price of `model` behind `adapter`: the prices file's entry for
    /// `adapter:model`, else for `model`, else the built-in table's
    /// longest matching prefix.
    pub fn price(&self, adapter: &str, model: &str) -> Option<Price> {
        if let Some(p) = self.overrides.get(&format!("{adapter}:{model}")).or_else(|| self.overrides.get(model)) {
            return Some(*p);
        }
        BUILTIN
            .iter()
            .filter(|(a, prefix, _, _)| *a == adapter && model.starts_with(prefix))
            .max_by_key(|(_, prefix, _, _)| prefix.len())
            .map(|(_, _, input, output)| Price::per_million(*input, *output))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_take_their_familys_price_and_the_file_overrides_it() {
        let table = PriceTable::default();
        let mini = table.price("openai", "gpt-4o-mini-2024-07-18").unwrap();
        assert_eq!(mini, Price::per_million(0.15, 0.60), "the longest prefix wins over gpt-4o");
        assert_eq!(table.price("anthropic", "claude-sonnet-4-5-20250929"), Some(Price::per_million(3.0, 15.0)));
        assert_eq!(table.price("ollama", "llama3"), None, "local models have no known price");
        assert_eq!(table.price("ollama", "gpt-4o"), None, "a price belongs to its adapter");
        let cost = mini.cost(TokenUsage { prompt: 1_000_000, completion: 500_000 });
        assert!((cost - 0.45).abs() < 1e-9, "{cost}");

        let table =
            PriceTable::parse("ollama:llama3: {input: 0.1, output: 0.2}\ngpt-4o: {input: 1, output: 1}\n").unwrap();
        assert_eq!(table.price("ollama", "llama3"), Some(Price::per_million(0.1, 0.2)));
        assert_eq!(table.price("openai", "gpt-4o"), Some(Price::per_million(1.0, 1.0)));
        assert_eq!(table.price("openai", "gpt-4o-mini"), Some(Price::per_million(0.15, 0.60)));
        assert!(PriceTable::parse("x: {input: -1, output: 0}").unwrap_err().0.contains("`x`"));
        assert!(PriceTable::parse("x: {input: 1}").is_err());
    }
}
