//! The event-callback outbox, on SQLite and (when configured) PostgreSQL.

mod support;

use support::{new_app_id, TestDb};
use weir_store::{
    AttemptFailure, NewOutboxEvent, OutboxEvent, OutboxSequencer, OutboxStatus, RetryOutcome,
    Store, StoreError,
};

on_both_databases!(
    only_the_oldest_pending_event_of_each_room_is_due,
    a_later_event_waits_until_the_earlier_is_delivered,
    giving_up_lets_the_room_move_on,
    claims_are_exclusive_and_hide_the_event_until_the_lease_ends,
    bodies_are_stored_byte_for_byte_and_enqueue_is_idempotent,
    sequence_resumes_above_stored_events,
    listing_pages_and_filters_by_status,
    listing_refuses_unknown_apps_and_bad_paging,
    failed_events_can_be_retried,
    delivered_events_are_deleted_after_retention,
);

const T0: i64 = 1_700_000_000_000;

fn event(app_id: &str, room_id: &str, n: u32) -> NewOutboxEvent {
    let event_id = format!("ev_{app_id}_{room_id}_{n}");
    NewOutboxEvent {
        body: format!(r#"{{"event_id":"{event_id}","n":{n}}}"#),
        event_id,
        app_id: app_id.to_string(),
        room_id: room_id.to_string(),
        event_type: "PARTICIPANT_JOINED".to_string(),
        created_at_ms: T0,
    }
}

async fn enqueue(store: &Store, events: &[NewOutboxEvent]) {
    let mut sequencer = store.outbox_sequencer().await.expect("sequencer");
    store
        .enqueue_events(&mut sequencer, events)
        .await
        .expect("enqueue");
}

async fn due_ids(store: &Store, now_ms: i64) -> Vec<String> {
    let mut ids: Vec<String> = store
        .due_events(now_ms, 100)
        .await
        .expect("due events")
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    ids.sort();
    ids
}

async fn get(store: &Store, event_id: &str) -> OutboxEvent {
    store
        .outbox_event(event_id)
        .await
        .expect("read event")
        .expect("the event exists")
}

fn failure(error: &str, status_code: Option<u16>) -> AttemptFailure {
    AttemptFailure {
        error: error.to_string(),
        status_code,
    }
}

async fn only_the_oldest_pending_event_of_each_room_is_due(db: &TestDb) {
    let store = &db.store;
    let a = new_app_id(store, "a").await;
    let b = new_app_id(store, "b").await;
    // Two apps may use the same room name: they are different rooms.
    enqueue(
        store,
        &[
            event(&a, "r1", 1),
            event(&a, "r2", 1),
            event(&a, "r1", 2),
            event(&b, "r1", 1),
            event(&a, "r1", 3),
        ],
    )
    .await;
    let mut heads = vec![
        format!("ev_{a}_r1_1"),
        format!("ev_{a}_r2_1"),
        format!("ev_{b}_r1_1"),
    ];
    heads.sort();
    assert_eq!(due_ids(store, T0).await, heads);
    // Nothing is due before it was created.
    assert!(due_ids(store, T0 - 1).await.is_empty());
    assert_eq!(store.next_due_at_ms().await.expect("next due"), Some(T0));
    // The limit applies.
    assert_eq!(store.due_events(T0, 2).await.expect("due").len(), 2);

    let first = get(store, &format!("ev_{a}_r1_1")).await;
    assert_eq!(first.status, OutboxStatus::Pending);
    assert_eq!(first.attempts, 0);
    assert_eq!(first.next_attempt_at_ms, Some(T0));
    assert_eq!(first.first_attempt_at_ms, None);
    assert_eq!(first.created_at_ms, T0);
    assert_eq!(first.event_type, "PARTICIPANT_JOINED");
    let second = get(store, &format!("ev_{a}_r1_2")).await;
    let third = get(store, &format!("ev_{a}_r1_3")).await;
    assert!(first.seq < second.seq && second.seq < third.seq);
}

async fn a_later_event_waits_until_the_earlier_is_delivered(db: &TestDb) {
    let store = &db.store;
    let a = new_app_id(store, "a").await;
    enqueue(store, &[event(&a, "r", 1), event(&a, "r", 2)]).await;
    let first = format!("ev_{a}_r_1");
    let second = format!("ev_{a}_r_2");

    store
        .record_failed_attempt(&first, &failure("HTTP 503", Some(503)), T0 + 1000)
        .await
        .expect("record failure");
    // The room's head is not due yet, and the later event is not offered.
    assert!(due_ids(store, T0 + 999).await.is_empty());
    assert_eq!(store.next_due_at_ms().await.expect("next"), Some(T0 + 1000));
    assert_eq!(due_ids(store, T0 + 1000).await, vec![first.clone()]);
    let failed_once = get(store, &first).await;
    assert_eq!(failed_once.attempts, 1);
    assert_eq!(failed_once.last_error.as_deref(), Some("HTTP 503"));
    assert_eq!(failed_once.last_status_code, Some(503));
    assert_eq!(failed_once.status, OutboxStatus::Pending);

    store
        .mark_delivered(&first, T0 + 1500, 204)
        .await
        .expect("delivered");
    let delivered = get(store, &first).await;
    assert_eq!(delivered.status, OutboxStatus::Delivered);
    assert_eq!(delivered.attempts, 2);
    assert_eq!(delivered.delivered_at_ms, Some(T0 + 1500));
    assert_eq!(delivered.last_status_code, Some(204));
    assert_eq!(delivered.last_error, None);
    assert_eq!(delivered.next_attempt_at_ms, None);
    assert_eq!(due_ids(store, T0 + 1500).await, vec![second.clone()]);

    // A finished event does not change any more.
    store
        .record_failed_attempt(&first, &failure("late", None), T0 + 9000)
        .await
        .expect("no-op");
    store
        .mark_failed(&first, &failure("late", None))
        .await
        .expect("no-op");
    assert_eq!(get(store, &first).await, delivered);

    store
        .mark_delivered(&second, T0 + 1600, 200)
        .await
        .expect("delivered");
    assert!(due_ids(store, i64::MAX).await.is_empty());
    assert_eq!(store.next_due_at_ms().await.expect("next"), None);
}

async fn giving_up_lets_the_room_move_on(db: &TestDb) {
    let store = &db.store;
    let a = new_app_id(store, "a").await;
    enqueue(store, &[event(&a, "r", 1), event(&a, "r", 2)]).await;
    let first = format!("ev_{a}_r_1");
    store
        .mark_failed(&first, &failure("connection refused", None))
        .await
        .expect("give up");
    let failed = get(store, &first).await;
    assert_eq!(failed.status, OutboxStatus::Failed);
    assert_eq!(failed.attempts, 1);
    assert_eq!(failed.last_error.as_deref(), Some("connection refused"));
    assert_eq!(failed.last_status_code, None);
    assert_eq!(failed.next_attempt_at_ms, None);
    assert_eq!(due_ids(store, T0).await, vec![format!("ev_{a}_r_2")]);
}

async fn claims_are_exclusive_and_hide_the_event_until_the_lease_ends(db: &TestDb) {
    let store = &db.store;
    let a = new_app_id(store, "a").await;
    enqueue(store, &[event(&a, "r", 1), event(&a, "r", 2)]).await;
    let due = store.due_events(T0 + 10, 10).await.expect("due");
    assert_eq!(due.len(), 1);
    let head = &due[0];

    assert!(store
        .claim_event(head, T0 + 10, T0 + 5000)
        .await
        .expect("claim"));
    // A second sender holding the same read loses.
    assert!(!store
        .claim_event(head, T0 + 10, T0 + 5000)
        .await
        .expect("claim"));
    let claimed = get(store, &head.event_id).await;
    assert_eq!(claimed.first_attempt_at_ms, Some(T0 + 10));
    assert_eq!(claimed.next_attempt_at_ms, Some(T0 + 5000));
    // Neither it nor the room's later event is offered during the lease.
    assert!(due_ids(store, T0 + 4999).await.is_empty());

    // A sender that died: the event is offered again after the lease, and a
    // new claim keeps the first attempt's time.
    let again = store.due_events(T0 + 5000, 10).await.expect("due");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].event_id, head.event_id);
    assert!(store
        .claim_event(&again[0], T0 + 5000, T0 + 9000)
        .await
        .expect("claim"));
    assert_eq!(
        get(store, &head.event_id).await.first_attempt_at_ms,
        Some(T0 + 10)
    );

    // Finished events cannot be claimed.
    store
        .mark_failed(&head.event_id, &failure("gone", None))
        .await
        .expect("give up");
    let finished = get(store, &head.event_id).await;
    assert!(!store
        .claim_event(&finished, T0 + 9000, T0 + 9999)
        .await
        .expect("claim"));
}

async fn bodies_are_stored_byte_for_byte_and_enqueue_is_idempotent(db: &TestDb) {
    let store = &db.store;
    let a = new_app_id(store, "a").await;
    let mut odd = event(&a, "r", 1);
    odd.body = "{\"user_id\": \"ünï\\u0000\",\n \"x\":  1.50e3 }".to_string();
    enqueue(store, std::slice::from_ref(&odd)).await;
    let stored = get(store, &odd.event_id).await;
    assert_eq!(stored.body, odd.body);

    // The same event id again (a batch retried after a lost commit): the
    // first stays, nothing fails.
    let mut again = odd.clone();
    again.body = "{}".to_string();
    enqueue(store, &[again, event(&a, "r", 2)]).await;
    assert_eq!(get(store, &odd.event_id).await, stored);
    assert_eq!(
        get(store, &format!("ev_{a}_r_2")).await.status,
        OutboxStatus::Pending
    );
}

async fn sequence_resumes_above_stored_events(db: &TestDb) {
    let store = &db.store;
    let a = new_app_id(store, "a").await;
    // Far in the future: the clock of the next start is behind it.
    let mut future = event(&a, "r", 1);
    future.created_at_ms = T0 + 86_400_000;
    enqueue(store, &[future.clone()]).await;
    let stored = get(store, &future.event_id).await;

    let reopened = Store::connect(&db.url).await.expect("reconnect");
    let mut sequencer = reopened.outbox_sequencer().await.expect("sequencer");
    let next = sequencer.next(T0);
    assert!(next > stored.seq, "{next} <= {}", stored.seq);
    reopened
        .enqueue_events(
            &mut OutboxSequencer::starting_after(next),
            &[event(&a, "r", 2)],
        )
        .await
        .expect("enqueue");
    assert_eq!(
        due_ids(&reopened, i64::MAX).await,
        vec![future.event_id.clone()],
        "the older event stays first"
    );
    reopened.close().await;
}

#[test]
fn sequencer_is_strictly_increasing_and_follows_the_clock() {
    let mut sequencer = OutboxSequencer::starting_after(0);
    let a = sequencer.next(T0);
    let b = sequencer.next(T0);
    let c = sequencer.next(T0 - 5000);
    assert_eq!(a, T0 * 1000);
    assert!(a < b && b < c);
    assert_eq!(sequencer.next(T0 + 1), (T0 + 1) * 1000);
    let mut at_the_end = OutboxSequencer::starting_after(i64::MAX - 1);
    assert_eq!(at_the_end.next(T0), i64::MAX);
}

#[test]
fn statuses_parse() {
    for status in OutboxStatus::ALL {
        assert_eq!(status.as_str().parse::<OutboxStatus>().ok(), Some(status));
    }
    assert!(matches!(
        "Pending".parse::<OutboxStatus>(),
        Err(StoreError::Invalid {
            field: "status",
            ..
        })
    ));
}

async fn listing_pages_and_filters_by_status(db: &TestDb) {
    let store = &db.store;
    let a = new_app_id(store, "a").await;
    let other = new_app_id(store, "other").await;
    let events: Vec<NewOutboxEvent> = (1..=5).map(|n| event(&a, &format!("r{n}"), n)).collect();
    enqueue(store, &events).await;
    enqueue(store, &[event(&other, "r1", 1)]).await;
    store
        .mark_delivered(&events[0].event_id, T0 + 1, 200)
        .await
        .expect("delivered");
    store
        .mark_failed(&events[1].event_id, &failure("HTTP 500", Some(500)))
        .await
        .expect("failed");

    let all = store
        .list_outbox_events(&a, None, 1, 100)
        .await
        .expect("list");
    assert_eq!(all.total, 5);
    let ids: Vec<&str> = all.items.iter().map(|e| e.event_id.as_str()).collect();
    let newest_first: Vec<&str> = events.iter().rev().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, newest_first);

    let mut paged = Vec::new();
    for page in 1..=3 {
        let listing = store
            .list_outbox_events(&a, None, page, 2)
            .await
            .expect("page");
        assert_eq!(
            (listing.total, listing.page, listing.page_size),
            (5, page, 2)
        );
        paged.extend(listing.items.into_iter().map(|e| e.event_id));
    }
    assert_eq!(paged, newest_first);
    let beyond = store
        .list_outbox_events(&a, None, 4, 2)
        .await
        .expect("page");
    assert!(beyond.items.is_empty());
    assert_eq!(beyond.total, 5);

    for (status, expected) in [
        (OutboxStatus::Delivered, vec![events[0].event_id.clone()]),
        (OutboxStatus::Failed, vec![events[1].event_id.clone()]),
        (
            OutboxStatus::Pending,
            events[2..]
                .iter()
                .rev()
                .map(|e| e.event_id.clone())
                .collect(),
        ),
    ] {
        let listing = store
            .list_outbox_events(&a, Some(status), 1, 100)
            .await
            .expect("list");
        let ids: Vec<String> = listing.items.into_iter().map(|e| e.event_id).collect();
        assert_eq!(ids, expected, "{status}");
        assert_eq!(listing.total, expected.len() as u64);
    }
}

async fn listing_refuses_unknown_apps_and_bad_paging(db: &TestDb) {
    let store = &db.store;
    let a = new_app_id(store, "a").await;
    assert!(matches!(
        store.list_outbox_events("app_nope", None, 1, 10).await,
        Err(StoreError::NotFound { .. })
    ));
    for (page, page_size, field) in [(0, 10, "page"), (1, 0, "page_size"), (1, 101, "page_size")] {
        match store.list_outbox_events(&a, None, page, page_size).await {
            Err(StoreError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected Invalid {field}, got {other:?}"),
        }
    }
}

async fn failed_events_can_be_retried(db: &TestDb) {
    let store = &db.store;
    let a = new_app_id(store, "a").await;
    let other = new_app_id(store, "other").await;
    enqueue(store, &[event(&a, "r", 1), event(&a, "r", 2)]).await;
    let first = format!("ev_{a}_r_1");
    let second = format!("ev_{a}_r_2");
    store
        .record_failed_attempt(&first, &failure("HTTP 500", Some(500)), T0 + 10)
        .await
        .expect("failure");
    store
        .mark_failed(&first, &failure("HTTP 502", Some(502)))
        .await
        .expect("give up");

    assert_eq!(
        store
            .retry_failed_event(&a, &second, T0 + 100)
            .await
            .expect("retry"),
        RetryOutcome::NotFailed(OutboxStatus::Pending)
    );
    assert_eq!(
        store
            .retry_failed_event(&a, "ev_missing", T0 + 100)
            .await
            .expect("retry"),
        RetryOutcome::NotFound
    );
    // Another application's id does not reach this event.
    assert_eq!(
        store
            .retry_failed_event(&other, &first, T0 + 100)
            .await
            .expect("retry"),
        RetryOutcome::NotFound
    );
    assert!(matches!(
        store.retry_failed_event("app_nope", &first, T0).await,
        Err(StoreError::NotFound { .. })
    ));

    let RetryOutcome::Retried(retried) = store
        .retry_failed_event(&a, &first, T0 + 100)
        .await
        .expect("retry")
    else {
        panic!("the failed event is retried");
    };
    assert_eq!(retried.status, OutboxStatus::Pending);
    assert_eq!(retried.attempts, 0);
    assert_eq!(retried.first_attempt_at_ms, None);
    assert_eq!(retried.next_attempt_at_ms, Some(T0 + 100));
    assert_eq!(retried.last_error.as_deref(), Some("HTTP 502"));
    // It is the room's head again: the later event waits for it.
    assert_eq!(due_ids(store, T0 + 100).await, vec![first]);
}

async fn delivered_events_are_deleted_after_retention(db: &TestDb) {
    let store = &db.store;
    let a = new_app_id(store, "a").await;
    let events: Vec<NewOutboxEvent> = (1..=4).map(|n| event(&a, &format!("r{n}"), n)).collect();
    enqueue(store, &events).await;
    store
        .mark_delivered(&events[0].event_id, T0 + 10, 200)
        .await
        .expect("delivered");
    store
        .mark_delivered(&events[1].event_id, T0 + 20, 200)
        .await
        .expect("delivered");
    store
        .mark_failed(&events[2].event_id, &failure("x", None))
        .await
        .expect("failed");

    assert_eq!(
        store
            .delete_delivered_events(T0 + 20)
            .await
            .expect("delete"),
        1
    );
    assert!(store
        .outbox_event(&events[0].event_id)
        .await
        .expect("read")
        .is_none());
    // Failed and pending events are kept whatever their age.
    assert_eq!(
        store
            .delete_delivered_events(i64::MAX)
            .await
            .expect("delete"),
        1
    );
    let left = store
        .list_outbox_events(&a, None, 1, 100)
        .await
        .expect("list");
    let mut statuses: Vec<OutboxStatus> = left.items.iter().map(|e| e.status).collect();
    statuses.sort_by_key(|s| s.as_str());
    assert_eq!(statuses, vec![OutboxStatus::Failed, OutboxStatus::Pending]);
}
