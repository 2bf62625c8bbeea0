//! "Did you mean ...?": the known name closest to a misspelt one.

/// The candidate closest to `name`, if one is close enough to be what the
/// user meant: within an edit distance of a third of the name (at least
/// 1, at most 3), or starting with it (`similar` -> `similarity`).
pub fn closest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let allowed = (name.chars().count() / 3).clamp(1, 3);
    candidates
        .iter()
        .filter(|c| !c.is_empty())
        .map(|c| {
            let distance = strsim::damerau_levenshtein(name, c);
            // A prefix counts as close, after any real typo match.
            let prefix = name.len() >= 3 && c.starts_with(name);
            (
                if distance <= allowed {
                    distance
                } else if prefix {
                    allowed + 1
                } else {
                    usize::MAX
                },
                *c,
            )
        })
        .filter(|(d, _)| *d != usize::MAX)
        .min_by_key(|(d, c)| (*d, c.len()))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn typos_and_prefixes_find_the_name_and_strangers_find_nothing() {
        let known = ["contains", "icontains", "similarity", "equals", "regex", "is-json"];
        assert_eq!(closest("contians", &known), Some("contains"));
        assert_eq!(closest("similar", &known), Some("similarity"));
        assert_eq!(closest("equal", &known), Some("equals"));
        assert_eq!(closest("regx", &known), Some("regex"));
        assert_eq!(closest("vibes", &known), None);
        assert_eq!(closest("asert", &["description", "vars", "assert"]), Some("assert"));
    }
}
