//! Duplicate analyses and archives, for every backend (run from `conformance.rs`).

use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use super::harness::Harness;
use crate::jobs::{AnalysisOutcome, AnalysisSpec, AnalysisState, ArchiveRecord};

fn spec() -> AnalysisSpec {
    AnalysisSpec { collection: "images".into(), threshold: 0.9 }
}

pub(super) async fn an_analysis_reports_progress_and_ends_once_under_its_lease(h: &Harness) {
    let s = h.store();
    s.create_analysis("t", &spec(), "o1").await.unwrap();
    let a = s.analysis("t").await.unwrap().unwrap();
    assert_eq!((a.state, a.scanned, a.total, a.report.clone(), a.spec.clone()), (AnalysisState::Running, 0, 0, None, spec()));
    assert!(s.analysis_progress("t", "o1", 5, 10).await.unwrap());
    assert!(!s.analysis_progress("t", "someone-else", 6, 10).await.unwrap(), "only the owner reports");
    let a = s.analysis("t").await.unwrap().unwrap();
    assert_eq!((a.scanned, a.total), (5, 10));
    // A fresh heartbeat: nothing to take over.
    assert!(s.claim_stale_analysis("o2", Duration::from_secs(3600)).await.unwrap().is_none());

    let report = json!({"exact_groups": [], "near_groups": [{"images": ["a", "b"]}]});
    assert!(!s.finish_analysis("t", "someone-else", &AnalysisOutcome::Completed(report.clone())).await.unwrap());
    assert!(s.finish_analysis("t", "o1", &AnalysisOutcome::Completed(report.clone())).await.unwrap());
    assert!(!s.finish_analysis("t", "o1", &AnalysisOutcome::Failed("late".into())).await.unwrap(), "it ends once");
    let a = s.analysis("t").await.unwrap().unwrap();
    assert_eq!((a.state, a.report, a.error), (AnalysisState::Completed, Some(report), None));
    assert!(a.finished_at.is_some());
    assert!(s.analysis("unknown").await.unwrap().is_none());
}

pub(super) async fn a_stale_analysis_is_taken_over_and_its_old_runner_is_stopped(h: &Harness) {
    let s = h.store();
    s.create_analysis("t", &spec(), "o1").await.unwrap();
    assert!(s.analysis_progress("t", "o1", 7, 10).await.unwrap());
    tokio::time::sleep(Duration::from_millis(30)).await;
    let taken = s.claim_stale_analysis("o2", Duration::from_millis(10)).await.unwrap().unwrap();
    assert_eq!((taken.task_id.as_str(), taken.spec, taken.state), ("t", spec(), AnalysisState::Running));
    // Taken once: the new owner's heartbeat is fresh.
    assert!(s.claim_stale_analysis("o3", Duration::from_secs(3600)).await.unwrap().is_none());
    assert!(!s.analysis_progress("t", "o1", 8, 10).await.unwrap(), "the old runner learns it lost the lease");
    assert_eq!(s.analysis("t").await.unwrap().unwrap().scanned, 0, "a run starts over");
    assert!(s.finish_analysis("t", "o2", &AnalysisOutcome::Failed("vector store gone".into())).await.unwrap());
    let a = s.analysis("t").await.unwrap().unwrap();
    assert_eq!((a.state, a.error.as_deref()), (AnalysisState::Failed, Some("vector store gone")));
    // A finished analysis is never taken over.
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(s.claim_stale_analysis("o4", Duration::from_millis(10)).await.unwrap().is_none());
}

pub(super) async fn archives_keep_their_manifest_and_are_restored_once(h: &Harness) {
    let s = h.store();
    let created_at = Utc::now();
    let mut record = ArchiveRecord {
        archive_id: "a1".into(),
        kind: "exact".into(),
        collection: "images".into(),
        manifest: json!({"entries": [{"from": "/r/a.jpg", "to": "/r/_duplicates/a.jpg", "state": "planned"}]}),
        created_at,
        restored_at: None,
    };
    s.save_archive(&record).await.unwrap();
    record.manifest = json!({"entries": [{"from": "/r/a.jpg", "to": "/r/_duplicates/a.jpg", "state": "moved"}]});
    s.save_archive(&record).await.unwrap();
    let got = s.archive("a1").await.unwrap().unwrap();
    assert_eq!((&got.kind, &got.collection, &got.manifest, got.restored_at), (&record.kind, &record.collection, &record.manifest, None));
    assert!((got.created_at - created_at).num_milliseconds().abs() < 1);
    assert!(s.mark_restored("a1").await.unwrap());
    assert!(!s.mark_restored("a1").await.unwrap(), "restored once");
    assert!(!s.mark_restored("unknown").await.unwrap());
    assert!(s.archive("a1").await.unwrap().unwrap().restored_at.is_some());
    assert!(s.archive("unknown").await.unwrap().is_none());
}
