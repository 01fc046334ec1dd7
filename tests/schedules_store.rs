//! The scheduler's storage on the three backends (embedded, Redis, a
//! one-node Redis Cluster): the timelines' claim — of racing replicas that
//! saw a due time, exactly one moves it, and its run lands on the runs line
//! in the same step — and the record store's compare-and-set, pages and
//! pruning as scheduled work uses them.

#[macro_use]
#[path = "support/backends.rs"]
mod backends;
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/tools.rs"]
mod tools;
#[macro_use]
#[path = "support/store_suite.rs"]
mod store_suite;

use std::sync::Arc;

use store_suite::{Backend, StoreEnv};
use tollgate::schedules::{timeline, Line, Timeline};
use tollgate::store::Stores;

store_suite!(
    a_due_time_is_claimed_by_exactly_one_of_racing_replicas,
    the_timelines_list_what_is_due_earliest_first,
    records_are_compare_and_set_paged_and_pruned,
);

/// Each call is one replica's handle onto the same backend.
async fn open(env: &StoreEnv) -> Stores {
    Stores::open(&env.config.store).await.expect("the store opens")
}

async fn a_due_time_is_claimed_by_exactly_one_of_racing_replicas(backend: Backend) {
    let Some(env) = StoreEnv::start(backend, "timeline-claim", "tgs").await else { return };
    let mut replicas: Vec<Arc<dyn Timeline>> = Vec::new();
    for _ in 0..3 {
        replicas.push(timeline::open(&open(&env).await));
    }
    // 50 schedules due at t=1000; every replica tries every one at once.
    for i in 0..50 {
        replicas[0].put(Line::Due, &format!("acme/sch_{i:02}"), Some(1000)).await.unwrap();
    }
    let mut racing = tokio::task::JoinSet::new();
    for (r, line) in replicas.iter().enumerate() {
        for i in 0..50 {
            let line = line.clone();
            racing.spawn(async move {
                let member = format!("acme/sch_{i:02}");
                let run = format!("acme/task_{i:02}");
                let won = line.advance(Line::Due, &member, 1000, Some(61_000), Some((&run, 5000 + r as i64))).await;
                (i, won.unwrap())
            });
        }
    }
    let mut wins = vec![0; 50];
    while let Some(done) = racing.join_next().await {
        let (i, won) = done.unwrap();
        wins[i] += won as usize;
    }
    assert_eq!(wins, vec![1; 50], "each due time claimed exactly once");
    let due = replicas[1].upto(Line::Due, i64::MAX, 100).await.unwrap();
    assert_eq!(due.len(), 50);
    assert!(due.iter().all(|(_, at)| *at == 61_000), "each moved to its next due time: {due:?}");
    let runs = replicas[2].upto(Line::Runs, i64::MAX, 100).await.unwrap();
    assert_eq!(runs.len(), 50, "each claim's run is on the runs line");

    // A stale claim (the due time moved on) and one for a member not there fail.
    assert!(!replicas[0].advance(Line::Due, "acme/sch_00", 1000, Some(2), None).await.unwrap());
    assert!(!replicas[0].advance(Line::Due, "acme/nobody", 1000, Some(2), None).await.unwrap());
    // Renewing a run's lease, then finishing it (taking it off).
    let (run, at) = runs[0].clone();
    assert!(replicas[0].advance(Line::Runs, &run, at, Some(90_000), None).await.unwrap());
    assert!(!replicas[1].advance(Line::Runs, &run, at, Some(95_000), None).await.unwrap(), "the old lease is gone");
    assert!(replicas[1].advance(Line::Runs, &run, 90_000, None, None).await.unwrap());
    assert_eq!(replicas[2].upto(Line::Runs, i64::MAX, 100).await.unwrap().len(), 49);
}

async fn the_timelines_list_what_is_due_earliest_first(backend: Backend) {
    let Some(env) = StoreEnv::start(backend, "timeline-list", "tgs").await else { return };
    let line = timeline::open(&open(&env).await);
    for (member, at) in [("w/c", 3_000), ("w/a", 1_000), ("w/b", 2_000), ("w/z", 1_796_202_000_000)] {
        line.put(Line::Due, member, Some(at)).await.unwrap();
    }
    let due = line.upto(Line::Due, 2_500, 10).await.unwrap();
    assert_eq!(due, vec![("w/a".to_owned(), 1_000), ("w/b".to_owned(), 2_000)]);
    assert_eq!(line.upto(Line::Due, i64::MAX, 2).await.unwrap().len(), 2, "bounded");
    let far = line.upto(Line::Due, i64::MAX, 10).await.unwrap();
    assert_eq!(far.last().unwrap(), &("w/z".to_owned(), 1_796_202_000_000), "Unix ms are exact");
    line.put(Line::Due, "w/a", None).await.unwrap();
    line.put(Line::Due, "w/b", Some(10)).await.unwrap();
    assert_eq!(line.upto(Line::Due, 2_500, 10).await.unwrap(), vec![("w/b".to_owned(), 10)]);
    assert!(line.upto(Line::Runs, i64::MAX, 10).await.unwrap().is_empty(), "the lines are apart");
}

async fn records_are_compare_and_set_paged_and_pruned(backend: Backend) {
    let Some(env) = StoreEnv::start(backend, "records", "tgs").await else { return };
    let (a, b) = (tollgate::records::open(&open(&env).await), tollgate::records::open(&open(&env).await));
    let now = tollgate::store::now();
    let later = now + 3600;
    assert!(a.save("acme", "note", "note_1", None, r#"{"n":1}"#, later).await.unwrap());
    assert!(!b.save("acme", "note", "note_1", None, r#"{"n":2}"#, later).await.unwrap(), "only if absent");
    assert!(b.save("acme", "note", "note_1", Some(1), r#"{"n":3}"#, later).await.unwrap());
    assert!(!a.save("acme", "note", "note_1", Some(1), r#"{"n":4}"#, later).await.unwrap(), "a stale version");
    let stored = a.load("acme", "note", "note_1").await.unwrap().unwrap();
    assert_eq!((stored.version, stored.json.as_str()), (2, r#"{"n":3}"#));
    // Scopes and collections are apart.
    assert!(a.load("other", "note", "note_1").await.unwrap().is_none());
    assert!(a.load("acme", "task", "note_1").await.unwrap().is_none());
    for i in 2..=5 {
        a.save("acme", "note", &format!("note_{i}"), None, "{}", later).await.unwrap();
    }
    let page = b.list("acme", "note", None, 3).await.unwrap();
    let ids: Vec<_> = page.records.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!((ids, page.has_more), (vec!["note_1", "note_2", "note_3"], true));
    let rest = b.list("acme", "note", Some("note_3"), 3).await.unwrap();
    assert_eq!((rest.records.len(), rest.has_more), (2, false));
    // Expired records are absent at once, and pruned from the embedded file.
    a.save("acme", "note", "note_old", None, "{}", now - 1).await.unwrap();
    assert!(a.load("acme", "note", "note_old").await.unwrap().is_none());
    assert_eq!(a.list("acme", "note", None, 100).await.unwrap().records.len(), 5);
    let pruned = a.prune(now).await.unwrap();
    let expected = if backend == Backend::Embedded { 1 } else { 0 };
    assert_eq!(pruned, expected, "Redis expires its own keys");
    assert!(a.remove("acme", "note", "note_5").await.unwrap());
    assert!(!a.remove("acme", "note", "note_5").await.unwrap());
}
