//! What every backend does to its input before writing: drop repeated candidates and
//! events, and spell outcomes the way the tables store them.

use std::collections::HashSet;

use super::{JobStoreError, NewItem};
use crate::messages::{CompletionEvent, FailureKind, FileStamp, Outcome};

/// Longest failure reason stored per item; workers' messages are for humans, not archives.
pub(super) const MAX_REASON_CHARS: usize = 2000;

/// First occurrence of each point, in input order.
pub(super) fn unique_by_point(candidates: &[NewItem]) -> Vec<&NewItem> {
    let mut seen = HashSet::with_capacity(candidates.len());
    candidates.iter().filter(|c| seen.insert(c.point_id)).collect()
}

/// First event per (job, item): a batch may carry a redelivered duplicate.
pub(super) fn unique_events(events: &[CompletionEvent]) -> Vec<&CompletionEvent> {
    let mut seen = HashSet::with_capacity(events.len());
    events.iter().filter(|e| seen.insert((e.job_id.as_str(), e.point_id))).collect()
}

/// The item state an outcome leads to.
pub(super) fn outcome_state(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Indexed => "indexed",
        Outcome::Failed { .. } => "failed",
    }
}

pub(super) fn failure(outcome: &Outcome) -> Option<(FailureKind, &str)> {
    match outcome {
        Outcome::Indexed => None,
        Outcome::Failed { kind, reason } => Some((*kind, reason.as_str())),
    }
}


/// The failure reason as stored: at most [`MAX_REASON_CHARS`] characters.
pub(super) fn stored_reason(outcome: &Outcome) -> Option<String> {
    failure(outcome).map(|(_, reason)| reason.chars().take(MAX_REASON_CHARS).collect())
}

/// The stored file stamp: both parts or neither, as `create_job` writes them.
pub(super) fn stamp(size: Option<i64>, mtime_ns: Option<i64>) -> Result<Option<FileStamp>, JobStoreError> {
    match (size, mtime_ns) {
        (Some(size), Some(mtime_ns)) => {
            let size = u64::try_from(size)
                .map_err(|_| JobStoreError::Other(format!("negative file size {size} in the job store")))?;
            Ok(Some(FileStamp { size, mtime_ns }))
        }
        (None, None) => Ok(None),
        _ => Err(JobStoreError::Other("half a file stamp in the job store".into())),
    }
}

/// A file stamp as stored: (size, mtime_ns), both NULL when there is none.
pub(super) fn stamp_columns(stamp: Option<FileStamp>) -> Result<(Option<i64>, Option<i64>), JobStoreError> {
    match stamp {
        None => Ok((None, None)),
        Some(s) => {
            let size = i64::try_from(s.size)
                .map_err(|_| JobStoreError::Other(format!("file size {} does not fit the job store", s.size)))?;
            Ok((Some(size), Some(s.mtime_ns)))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn stamps_round_trip_through_their_columns() {
        let s = FileStamp { size: 12, mtime_ns: -5 };
        let (size, mtime) = stamp_columns(Some(s)).unwrap();
        assert_eq!(stamp(size, mtime).unwrap(), Some(s));
        assert_eq!(stamp_columns(None).unwrap(), (None, None));
        assert_eq!(stamp(None, None).unwrap(), None);
        assert!(stamp_columns(Some(FileStamp { size: u64::MAX, mtime_ns: 0 })).is_err());
        assert!(stamp(Some(-1), Some(0)).is_err());
        assert!(stamp(Some(1), None).is_err());
    }

    #[test]
    fn long_reasons_are_cut() {
        let outcome = Outcome::Failed { kind: FailureKind::Unreadable, reason: "é".repeat(MAX_REASON_CHARS + 5) };
        assert_eq!(stored_reason(&outcome).unwrap().chars().count(), MAX_REASON_CHARS);
        assert_eq!(stored_reason(&Outcome::Indexed), None);
    }

    #[test]
    fn repeated_events_count_once_per_job_and_point() {
        let event = |job: &str, n| CompletionEvent {
            job_id: job.into(),
            point_id: Uuid::from_u128(n),
            path: String::new(),
            outcome: Outcome::Indexed,
            worker: String::new(),
            request_id: None,
            finished_at_ms: None,
            from_cache: false,
            object_key: None,
        };
        let events = [event("a", 1), event("a", 1), event("b", 1), event("a", 2)];
        let kept: Vec<_> = unique_events(&events).into_iter().map(|e| (e.job_id.as_str(), e.point_id)).collect();
        assert_eq!(kept, vec![("a", Uuid::from_u128(1)), ("b", Uuid::from_u128(1)), ("a", Uuid::from_u128(2))]);
    }
}
