//! The filters and page of `POST /api/v1/query`, checked and turned into the vector
//! store's `SearchFilter`: each is applied by the store while it searches, on indexed
//! payload keys, so a page is full whenever enough images match.

use chrono::{DateTime, Utc};

use imgidx_shared::vectors::{Bounds, SearchFilter};

use crate::error::ApiError;

/// Most tags one query may require, and their longest.
const MAX_TAGS: usize = 20;
const MAX_TAG_BYTES: usize = 100;
/// Most formats one query may list.
const MAX_FORMATS: usize = 20;
/// Deepest page: the store ranks `offset + top_k` images to answer one.
pub const MAX_OFFSET: usize = 10_000;

/// What a query asked for, as given.
#[derive(Default)]
pub struct Wanted {
    pub path_prefix: Option<String>,
    pub min_score: Option<f32>,
    pub tags: Option<Vec<String>>,
    pub formats: Option<Vec<String>>,
    pub min_width: Option<u32>,
    pub min_height: Option<u32>,
    pub mtime_from: Option<String>,
    pub mtime_to: Option<String>,
    pub indexed_from: Option<String>,
    pub indexed_to: Option<String>,
    pub offset: Option<usize>,
}

/// The store's filter for `wanted`; a field out of its bounds is a 422 naming it.
pub fn search_filter(wanted: Wanted) -> Result<SearchFilter, ApiError> {
    if let Some(s) = wanted.min_score {
        if !(-1.0..=1.0).contains(&s) {
            return Err(ApiError::Validation(format!("min_score must be between -1 and 1 (got {s})")));
        }
    }
    let tags = wanted.tags.unwrap_or_default();
    if tags.len() > MAX_TAGS || tags.iter().any(|t| t.is_empty() || t.len() > MAX_TAG_BYTES) {
        return Err(ApiError::Validation(format!("tags: at most {MAX_TAGS}, each 1 to {MAX_TAG_BYTES} bytes")));
    }
    // Formats are stored lower case (`jpeg`, `heic`); `jpg` is what people type.
    let formats: Vec<String> = wanted
        .formats
        .unwrap_or_default()
        .iter()
        .map(|f| match f.trim().to_ascii_lowercase().as_str() {
            "jpg" => "jpeg".to_owned(),
            "tif" => "tiff".to_owned(),
            other => other.to_owned(),
        })
        .collect();
    if formats.len() > MAX_FORMATS || formats.iter().any(|f| f.is_empty() || f.len() > 16) {
        return Err(ApiError::Validation(format!("formats: at most {MAX_FORMATS}, each a format name such as \"jpeg\"")));
    }
    let offset = wanted.offset.unwrap_or(0);
    if offset > MAX_OFFSET {
        return Err(ApiError::Validation(format!("offset must be at most {MAX_OFFSET} (got {offset})")));
    }
    let mtime = bounds("mtime", wanted.mtime_from.as_deref(), wanted.mtime_to.as_deref())?;
    let mtime_ns = Bounds { from: mtime.from.map(nanos), to: mtime.to.map(nanos) };
    Ok(SearchFilter {
        path_prefix: wanted.path_prefix.filter(|p| !p.is_empty()),
        min_score: wanted.min_score,
        tags,
        formats,
        min_width: wanted.min_width,
        min_height: wanted.min_height,
        mtime_ns,
        indexed_at: bounds("indexed", wanted.indexed_from.as_deref(), wanted.indexed_to.as_deref())?,
        offset,
    })
}

/// `<name>_from` and `<name>_to` as instants (RFC 3339, both included), in order.
fn bounds(name: &str, from: Option<&str>, to: Option<&str>) -> Result<Bounds<DateTime<Utc>>, ApiError> {
    let parse = |which: &str, value: &str| {
        DateTime::parse_from_rfc3339(value.trim()).map(|t| t.with_timezone(&Utc)).map_err(|_| {
            ApiError::Validation(format!("{name}_{which} must be an RFC 3339 time such as 2024-05-01T00:00:00Z (got {value:?})"))
        })
    };
    let bounds = Bounds { from: from.map(|v| parse("from", v)).transpose()?, to: to.map(|v| parse("to", v)).transpose()? };
    if let (Some(from), Some(to)) = (bounds.from, bounds.to) {
        if from > to {
            return Err(ApiError::Validation(format!("{name}_from is after {name}_to")));
        }
    }
    Ok(bounds)
}

/// Nanoseconds since the epoch, saturating: a time past 2262 (or before 1677) is beyond
/// every file time, so as a bound it means the same.
fn nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() > 0 { i64::MAX } else { i64::MIN })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked_and_normalised() {
        let filter = search_filter(Wanted {
            formats: Some(vec!["JPG".into(), "png".into()]),
            mtime_from: Some("2024-05-01T00:00:00Z".into()),
            indexed_to: Some("2024-05-02T12:00:00+02:00".into()),
            offset: Some(20),
            path_prefix: Some(String::new()),
            ..Wanted::default()
        })
        .unwrap();
        assert_eq!(filter.formats, ["jpeg", "png"]);
        assert_eq!(filter.mtime_ns.from, Some(1_714_521_600_000_000_000));
        assert_eq!(filter.indexed_at.to.unwrap().to_rfc3339(), "2024-05-02T10:00:00+00:00");
        assert_eq!((filter.offset, filter.path_prefix), (20, None));
        let far = search_filter(Wanted { mtime_to: Some("2999-01-01T00:00:00Z".into()), ..Wanted::default() }).unwrap();
        assert_eq!(far.mtime_ns.to, Some(i64::MAX), "past every file time");

        for bad in [
            Wanted { offset: Some(MAX_OFFSET + 1), ..Wanted::default() },
            Wanted { mtime_from: Some("yesterday".into()), ..Wanted::default() },
            Wanted { indexed_from: Some("2024-05-03T00:00:00Z".into()), indexed_to: Some("2024-05-02T00:00:00Z".into()), ..Wanted::default() },
            Wanted { formats: Some(vec![String::new()]), ..Wanted::default() },
            Wanted { min_score: Some(1.5), ..Wanted::default() },
        ] {
            assert!(matches!(search_filter(bad), Err(ApiError::Validation(_))));
        }
    }
}
