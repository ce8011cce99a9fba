//! Combined queries (`"queries": [{"text": "a dog", "weight": 1}, {"image_path": "…",
//! "weight": 0.5}, {"text": "people", "weight": -0.5}]`): each part is embedded as a query
//! of its own (unit length), the parts are summed with their weights and the sum is made
//! unit length again, then searched like any query. A negative weight steers away from
//! what its part shows.

use serde::Deserialize;

use crate::error::ApiError;

/// Most parts one query may combine.
pub const MAX_PARTS: usize = 8;
/// Largest weight, either way: beyond it the other parts no longer count.
const MAX_WEIGHT: f32 = 100.0;

/// One part of a combined query: exactly one of `text` and `image_path`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryPart {
    text: Option<String>,
    /// An indexed path (its stored vector), or a file inside `api.allowed_roots`.
    image_path: Option<String>,
    /// How much it counts, -100 to 100 and not 0 (default 1); negative: away from it.
    weight: Option<f32>,
}

/// A part, checked.
pub enum Part {
    Text(String),
    Path(String),
}

/// The parts with their weights; 422 for a part that names nothing or two things, a bad
/// weight, or no part with a positive weight.
pub fn parts(given: Vec<QueryPart>, checked_text: impl Fn(String) -> Result<String, ApiError>) -> Result<Vec<(Part, f32)>, ApiError> {
    if given.is_empty() || given.len() > MAX_PARTS {
        return Err(ApiError::Validation(format!("queries: 1 to {MAX_PARTS} parts (got {})", given.len())));
    }
    let mut out = Vec::with_capacity(given.len());
    for (i, part) in given.into_iter().enumerate() {
        let weight = part.weight.unwrap_or(1.0);
        if !weight.is_finite() || weight == 0.0 || weight.abs() > MAX_WEIGHT {
            return Err(ApiError::Validation(format!(
                "queries[{i}].weight must be between -{MAX_WEIGHT} and {MAX_WEIGHT}, and not 0 (got {weight})"
            )));
        }
        let part = match (part.text, part.image_path) {
            (Some(text), None) => Part::Text(checked_text(text).map_err(|e| prefixed(i, e))?),
            (None, Some(path)) => Part::Path(path),
            _ => return Err(ApiError::Validation(format!("queries[{i}] needs exactly one of text and image_path"))),
        };
        out.push((part, weight));
    }
    if !out.iter().any(|(_, w)| *w > 0.0) {
        return Err(ApiError::Validation("queries: at least one part needs a positive weight".into()));
    }
    Ok(out)
}

fn prefixed(i: usize, e: ApiError) -> ApiError {
    match e {
        ApiError::Validation(m) => ApiError::Validation(format!("queries[{i}].{m}")),
        other => other,
    }
}

/// The weighted sum of unit vectors, unit length again; 422 when the parts cancel out.
pub fn combine(vectors: &[(Vec<f32>, f32)]) -> Result<Vec<f32>, ApiError> {
    let dim = vectors.first().map_or(0, |(v, _)| v.len());
    let mut sum = vec![0f32; dim];
    for (vector, weight) in vectors {
        if vector.len() != dim {
            return Err(ApiError::Internal("query parts embedded to vectors of different sizes".into()));
        }
        for (s, x) in sum.iter_mut().zip(vector) {
            *s += weight * x;
        }
    }
    let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !norm.is_finite() || norm < 1e-6 {
        return Err(ApiError::Validation("queries: the weighted parts cancel each other out".into()));
    }
    Ok(sum.into_iter().map(|x| x / norm).collect())
}

/// How the query is reported: `"a dog" (1) + /photos/a.jpg (0.5) - "people" (0.5)`.
pub fn describe(parts: &[(Part, f32)]) -> String {
    let mut out = String::new();
    for (i, (part, weight)) in parts.iter().enumerate() {
        let sign = if *weight < 0.0 { " - " } else if i > 0 { " + " } else { "" };
        let what = match part {
            Part::Text(t) => format!("{t:?}"),
            Part::Path(p) => p.clone(),
        };
        out.push_str(&format!("{}{what} ({})", if i == 0 && *weight < 0.0 { "-" } else { sign }, weight.abs()));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn part(text: Option<&str>, path: Option<&str>, weight: Option<f32>) -> QueryPart {
        QueryPart { text: text.map(str::to_owned), image_path: path.map(str::to_owned), weight }
    }

    #[test]
    fn the_sum_is_weighted_and_unit_length() {
        let got = combine(&[(vec![1.0, 0.0], 1.0), (vec![0.0, 1.0], -0.5)]).unwrap();
        let norm = (1.0f32 + 0.25).sqrt();
        assert!((got[0] - 1.0 / norm).abs() < 1e-6 && (got[1] + 0.5 / norm).abs() < 1e-6, "{got:?}");
        assert!(matches!(combine(&[(vec![1.0, 0.0], 1.0), (vec![1.0, 0.0], -1.0)]), Err(ApiError::Validation(_))));
    }

    #[test]
    fn parts_are_checked() {
        let ok = |t: String| Ok(t);
        let given = vec![part(Some("a dog"), None, None), part(None, Some("/a.jpg"), Some(0.5)), part(Some("people"), None, Some(-0.5))];
        let checked = parts(given, ok).unwrap();
        assert_eq!(describe(&checked), "\"a dog\" (1) + /a.jpg (0.5) - \"people\" (0.5)");
        for bad in [
            vec![],
            vec![part(Some("a"), Some("/a.jpg"), None)],
            vec![part(None, None, None)],
            vec![part(Some("a"), None, Some(0.0))],
            vec![part(Some("a"), None, Some(f32::NAN))],
            vec![part(Some("a"), None, Some(-1.0))],
            (0..=MAX_PARTS).map(|_| part(Some("a"), None, None)).collect(),
        ] {
            assert!(matches!(parts(bad, ok), Err(ApiError::Validation(_))));
        }
    }
}
