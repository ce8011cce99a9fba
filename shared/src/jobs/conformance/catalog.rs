//! The collection catalog and the jobs' collections, for every backend (run from `conformance.rs`).

use chrono::{DateTime, Duration, Utc};

use super::harness::Harness;
use super::{indexed, items, requeued};
use crate::collections::{CollectionRecord, Distance, NextGeneration};
use crate::jobs::{AddCollection, BeginSwitch, ForgetPrevious, RemoveCollection, ScanOpened, ScanSpec, SwitchCompleted};
use crate::messages::Priority;

/// A whole second, so the stored time reads back equal in both backends.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap_or_default()
}

pub(super) async fn collections_are_added_listed_selected_and_removed(h: &Harness) {
    let s = h.store();
    assert_eq!(s.selected_collection().await.unwrap(), None);
    let initial = CollectionRecord::initial("images", "clip", 512, now());
    assert_eq!(s.ensure_initial_collection(&initial).await.unwrap(), initial);
    assert_eq!(s.selected_collection().await.unwrap().as_deref(), Some("images"));
    // A second start with another model keeps what was stored: the binding is the catalog's.
    let restarted = CollectionRecord::initial("images", "other", 768, now() + Duration::seconds(5));
    assert_eq!(s.ensure_initial_collection(&restarted).await.unwrap(), initial);

    let cats = CollectionRecord { previous: Some("cats__0".into()), ..CollectionRecord::new("cats", "clip", 512, Distance::Euclid, now()) };
    assert_eq!(s.add_collection(&cats, 3).await.unwrap(), AddCollection::Added);
    assert_eq!(s.add_collection(&CollectionRecord::new("cats", "x", 8, Distance::Dot, now()), 3).await.unwrap(), AddCollection::Exists(Box::new(cats.clone())));
    let dogs = CollectionRecord::new("dogs", "clip", 512, Distance::Dot, now());
    assert_eq!(s.add_collection(&dogs, 3).await.unwrap(), AddCollection::Added);
    assert_eq!(s.add_collection(&CollectionRecord::new("eels", "clip", 512, Distance::Cosine, now()), 3).await.unwrap(), AddCollection::Full);
    assert_eq!(s.collection("cats").await.unwrap(), Some(cats.clone()));
    assert_eq!(s.collection("eels").await.unwrap(), None);
    let names: Vec<String> = s.collections().await.unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["cats", "dogs", "images"]);

    assert!(s.select_collection("dogs").await.unwrap());
    assert!(!s.select_collection("eels").await.unwrap());
    assert_eq!(s.selected_collection().await.unwrap().as_deref(), Some("dogs"));
    // Selection survives another start: the initial collection is selected only when nothing is.
    s.ensure_initial_collection(&initial).await.unwrap();
    assert_eq!(s.selected_collection().await.unwrap().as_deref(), Some("dogs"));

    assert_eq!(s.remove_collection("dogs").await.unwrap(), RemoveCollection::Selected);
    assert_eq!(s.remove_collection("eels").await.unwrap(), RemoveCollection::Missing);
    assert_eq!(s.remove_collection("cats").await.unwrap(), RemoveCollection::Removed(Box::new(cats)));
    assert_eq!(s.collection("cats").await.unwrap(), None);
    assert!(s.select_collection("images").await.unwrap());
    assert_eq!(s.remove_collection("dogs").await.unwrap(), RemoveCollection::Removed(Box::new(dogs)));
}

pub(super) async fn a_collection_with_active_jobs_is_not_removed(h: &Harness) {
    let s = h.store();
    s.ensure_initial_collection(&CollectionRecord::initial("images", "clip", 8, now())).await.unwrap();
    let cats = CollectionRecord::new("cats", "clip", 8, Distance::Cosine, now());
    s.add_collection(&cats, 10).await.unwrap();
    s.create_job_in("j", Priority::Normal, Some(&cats.physical), &items(0..2)).await.unwrap();
    assert_eq!(s.job("j").await.unwrap().unwrap().collection.as_deref(), Some(cats.physical.as_str()));
    assert_eq!(s.remove_collection("cats").await.unwrap(), RemoveCollection::Busy { active_jobs: 1 });
    s.apply_events(&[indexed("j", 0), indexed("j", 1)]).await.unwrap();
    assert_eq!(s.remove_collection("cats").await.unwrap(), RemoveCollection::Removed(Box::new(cats)));
}

pub(super) async fn a_model_switch_moves_a_collection_to_its_next_generation_at_once(h: &Harness) {
    let s = h.store();
    let cats = CollectionRecord::new("cats", "clip", 8, Distance::Dot, now());
    s.add_collection(&cats, 10).await.unwrap();
    let next = |job_id: &str, physical: &str| NextGeneration {
        physical: physical.into(),
        model: "clip-b".into(),
        dim: 4,
        job_id: job_id.into(),
        started_at: now(),
    };
    assert_eq!(s.begin_switch("eels", &next("j1", "eels__2")).await.unwrap(), BeginSwitch::Missing);
    // Not while jobs write into it.
    s.create_job_in("j0", Priority::Normal, Some("cats__1"), &items(5..6)).await.unwrap();
    assert_eq!(s.begin_switch("cats", &next("j1", "cats__2")).await.unwrap(), BeginSwitch::Busy { active_jobs: 1 });
    s.apply_events(&[indexed("j0", 5)]).await.unwrap();
    let started = CollectionRecord { next: Some(next("j1", "cats__2")), ..cats.clone() };
    assert_eq!(s.begin_switch("cats", &next("j1", "cats__2")).await.unwrap(), BeginSwitch::Started(started.clone()));
    assert_eq!(s.collection("cats").await.unwrap(), Some(started.clone()));
    assert_eq!(
        s.begin_switch("cats", &next("j2", "cats__3")).await.unwrap(),
        BeginSwitch::Switching(next("j1", "cats__2")),
        "one switch at a time"
    );
    // Its job writes into the next generation: the collection is busy.
    s.create_job_in("j1", Priority::Normal, Some("cats__2"), &items(0..1)).await.unwrap();
    assert_eq!(s.remove_collection("cats").await.unwrap(), RemoveCollection::Busy { active_jobs: 1 });
    assert_eq!(s.complete_switch("cats", "j2").await.unwrap(), None, "only the switch's own job completes it");
    s.apply_events(&[indexed("j1", 0)]).await.unwrap();
    assert_eq!(s.abandon_switch("cats", "j2").await.unwrap(), None);

    let switched = CollectionRecord {
        physical: "cats__2".into(),
        previous: Some("cats__1".into()),
        model: "clip-b".into(),
        dim: 4,
        next: None,
        ..cats.clone()
    };
    assert_eq!(
        s.complete_switch("cats", "j1").await.unwrap(),
        Some(SwitchCompleted { record: switched.clone(), replaced: None })
    );
    assert_eq!(s.collection("cats").await.unwrap(), Some(switched.clone()));
    assert_eq!(s.complete_switch("cats", "j1").await.unwrap(), None, "completed once");

    // A second switch, abandoned: the collection stays as it was.
    assert!(matches!(s.begin_switch("cats", &next("j3", "cats__3")).await.unwrap(), BeginSwitch::Started(_)));
    assert_eq!(s.abandon_switch("cats", "j3").await.unwrap(), Some("cats__3".into()));
    assert_eq!(s.collection("cats").await.unwrap(), Some(switched.clone()));
    // A third, completed: the generation it replaces as previous is the caller's to drop.
    s.begin_switch("cats", &next("j4", "cats__4")).await.unwrap();
    let done = s.complete_switch("cats", "j4").await.unwrap().unwrap();
    assert_eq!((done.record.physical.as_str(), done.record.previous.as_deref()), ("cats__4", Some("cats__2")));
    assert_eq!(done.replaced.as_deref(), Some("cats__1"));

    assert_eq!(s.forget_previous("cats").await.unwrap(), ForgetPrevious::Forgotten("cats__2".into()));
    assert_eq!(s.forget_previous("cats").await.unwrap(), ForgetPrevious::NoPrevious);
    assert_eq!(s.forget_previous("eels").await.unwrap(), ForgetPrevious::Missing);
    assert_eq!(s.collection("cats").await.unwrap().unwrap().previous, None);
}

pub(super) async fn requeued_items_and_scans_carry_their_collection(h: &Harness) {
    let s = h.store();
    s.create_job_in("a", Priority::Normal, Some("cats__1"), &items(0..1)).await.unwrap();
    s.create_job("b", Priority::Normal, &items(1..2)).await.unwrap();
    assert_eq!(s.job("b").await.unwrap().unwrap().collection, None);
    let later = Utc::now() + Duration::seconds(1);
    let mut taken = s.requeue_stale_items(later, 10).await.unwrap();
    taken.sort_by(|x, y| x.job_id.cmp(&y.job_id));
    let mut expected_a = requeued("a", Priority::Normal, items(0..1).remove(0));
    expected_a.collection = Some("cats__1".into());
    assert_eq!(taken, vec![expected_a.clone(), requeued("b", Priority::Normal, items(1..2).remove(0))]);
    assert_eq!(expected_a.task(None).collection.as_deref(), Some("cats__1"));
    let unpublished = s.unpublished_items(later, None, 10).await.unwrap();
    assert_eq!(unpublished.iter().map(|i| i.collection.as_deref()).collect::<Vec<_>>(), [Some("cats__1"), None]);

    // One directory, two collections: two scans; the same collection again joins the first.
    let spec = |collection: Option<&str>| ScanSpec {
        dir: "/photos".into(),
        recursive: true,
        force_reindex: false,
        prune_missing: false,
        collection: collection.map(str::to_owned),
    };
    assert_eq!(s.open_scan("s1", Priority::Normal, &spec(None), "me").await.unwrap(), ScanOpened::Created);
    assert_eq!(s.open_scan("s2", Priority::Normal, &spec(Some("cats__1")), "me").await.unwrap(), ScanOpened::Created);
    assert_eq!(
        s.open_scan("s3", Priority::Normal, &spec(Some("cats__1")), "me").await.unwrap(),
        ScanOpened::Running { job_id: "s2".into() }
    );
    assert_eq!(s.job_scan("s2").await.unwrap().unwrap().spec, spec(Some("cats__1")));
    assert_eq!(s.job("s2").await.unwrap().unwrap().collection.as_deref(), Some("cats__1"));
    let leases = s.claim_stale_scans(std::time::Duration::ZERO, "other", 10).await.unwrap();
    let mut specs: Vec<_> = leases.into_iter().map(|l| (l.job_id, l.spec.collection)).collect();
    specs.sort();
    assert_eq!(specs, vec![("s1".into(), None), ("s2".into(), Some("cats__1".into()))]);
}
