//! The contract between a verdict's `pass`, its `score` and the
//! assertion's `threshold`, checked on every verdict a plugin returns.
//!
//! - The score is a finite number from 0 to 1.
//! - With a `threshold` in (0, 1], the threshold is the minimum score:
//!   `pass == (score >= threshold)`. Types whose threshold means something
//!   else (a distance for `levenshtein`, a bound for `length`) score 1 for a
//!   pass and 0 for a failure, which agrees with any threshold in that range.
//! - Without one (or with a threshold outside (0, 1], which cannot be a
//!   score), a pass scores above 0 and a failure below 1: a pass at 0 or a
//!   failure at 1 contradicts itself under any pass mark.
//!
//! The check runs on the plugin's own verdict, before `not-` negates it, so
//! negation (pass flipped, score `1 - score`) keeps the contract.

use super::SandboxError;

/// Refuses a verdict that breaks the contract above, with a reason that
/// names the numbers.
pub fn check(pass: bool, score: f64, threshold: Option<f64>) -> Result<(), SandboxError> {
    if !(score.is_finite() && (0.0..=1.0).contains(&score)) {
        return Err(SandboxError::BadVerdict(format!("score {score} is not a number from 0 to 1")));
    }
    match threshold.filter(|t| *t > 0.0 && *t <= 1.0) {
        Some(t) if pass && score < t => {
            Err(SandboxError::BadVerdict(format!("passed with score {score}, below the threshold {t}")))
        }
        Some(t) if !pass && score >= t => {
            Err(SandboxError::BadVerdict(format!("failed with score {score}, which meets the threshold {t}")))
        }
        Some(_) => Ok(()),
        None if pass && score == 0.0 => Err(SandboxError::BadVerdict("passed with score 0".to_string())),
        None if !pass && score == 1.0 => Err(SandboxError::BadVerdict("failed with score 1".to_string())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn scores_outside_zero_to_one_are_refused() {
        for score in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.1, 1.1] {
            assert!(check(true, score, None).is_err(), "{score}");
            assert!(check(false, score, Some(0.5)).is_err(), "{score}");
        }
    }

    #[test]
    fn without_a_score_threshold_pass_and_failure_must_not_contradict_the_score() {
        assert!(check(true, 0.0, None).is_err());
        assert!(check(false, 1.0, None).is_err());
        assert!(check(true, 0.01, None).is_ok());
        assert!(check(false, 0.99, None).is_ok());
        assert!(check(true, 1.0, None).is_ok());
        assert!(check(false, 0.0, None).is_ok());
        // A threshold that cannot be a score (a distance of 3, or 0) falls
        // back to the same rule.
        assert!(check(true, 0.0, Some(3.0)).is_err());
        assert!(check(true, 1.0, Some(3.0)).is_ok());
        assert!(check(false, 0.0, Some(0.0)).is_ok());
    }

    #[test]
    fn with_a_score_threshold_pass_is_exactly_score_at_or_above_it() {
        assert!(check(true, 0.8, Some(0.8)).is_ok());
        assert!(check(false, 0.79, Some(0.8)).is_ok());
        assert!(check(true, 0.79, Some(0.8)).is_err());
        assert!(check(false, 0.8, Some(0.8)).is_err());
        // Pass/fail scores of 1 and 0 agree with every score threshold.
        for t in [0.01, 0.5, 1.0] {
            assert!(check(true, 1.0, Some(t)).is_ok());
            assert!(check(false, 0.0, Some(t)).is_ok());
        }
    }
}
