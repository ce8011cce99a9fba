//! The `limit` of paged listings (items of a job, jobs), checked the same way everywhere.

use crate::error::ApiError;

pub(crate) const DEFAULT_LIMIT: usize = 100;
pub(crate) const MAX_LIMIT: usize = 1000;

/// `limit` as the query gave it (text, so any bad value gets one clear 422).
pub(crate) fn parse_limit(raw: Option<&str>) -> Result<usize, ApiError> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiError::Validation(format!("limit must be a whole number from 1 to {MAX_LIMIT} (got {l:?})"))),
    }
}

/// An absent or empty query value.
pub(crate) fn given(raw: Option<&str>) -> Option<&str> {
    raw.filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        assert_eq!(parse_limit(None).ok(), Some(DEFAULT_LIMIT));
        assert_eq!(parse_limit(Some("1000")).ok(), Some(1000));
        for bad in ["0", "1001", "-1", "ten", ""] {
            assert!(matches!(parse_limit(Some(bad)), Err(ApiError::Validation(m)) if m.contains("limit")), "{bad}");
        }
    }
}
