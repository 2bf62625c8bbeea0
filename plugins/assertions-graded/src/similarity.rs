//! Cosine similarity of embeddings.

/// The cosine of the angle between `a` and `b`, in -1..=1. Vectors of
/// different lengths, or a zero vector, are an error: the grader's
/// embedding model answered something that cannot be compared.
pub fn cosine(a: &[f32], b: &[f32]) -> Result<f64, String> {
    if a.len() != b.len() || a.is_empty() {
        return Err(format!("the embeddings have {} and {} dimensions; they cannot be compared", a.len(), b.len()));
    }
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    let norm = na.sqrt() * nb.sqrt();
    if !(norm.is_finite() && norm > 0.0 && dot.is_finite()) {
        return Err("an embedding is all zeros or not finite; it has no direction to compare".into());
    }
    Ok((dot / norm).clamp(-1.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_of_known_vectors() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]).unwrap() - 1.0).abs() < 1e-9);
        assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).unwrap().abs() < 1e-9);
        assert!((cosine(&[1.0, 1.0], &[-1.0, -1.0]).unwrap() + 1.0).abs() < 1e-9);
        assert!(cosine(&[1.0], &[1.0, 2.0]).is_err());
        assert!(cosine(&[0.0, 0.0], &[1.0, 2.0]).is_err());
        assert!(cosine(&[f32::NAN, 1.0], &[1.0, 2.0]).is_err());
    }
}
