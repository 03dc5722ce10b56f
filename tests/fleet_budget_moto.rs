//! The fleet's shared rate budget on DynamoDB (moto): three limiters on one table share one
//! rate, and the budget items stay out of the invite indexes. Needs the local stack (fails
//! without it).
//!
//! The budget's calls go through `scripts/fault_proxy.py` with `UpdateItem` serialized: moto
//! applies concurrent updates of one item without a lock (two `ADD`s can read the same old value
//! and hand out the same tickets twice); DynamoDB applies them atomically.

mod reliability_support;
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use invite_worker::adapters::dynamo::budget::{DynamoRateBudget, ATTR_GRANTED, BUDGET_PK_PREFIX};
use invite_worker::adapters::dynamo::{ATTR_PK, ATTR_SK, ATTR_TTL};
use invite_worker::config::Transport;
use invite_worker::domain::InviteStatus;
use invite_worker::ports::{InviteStore, RateBudget};
use invite_worker::ratelimit::fleet_budget::{system_wall_clock, FleetLimiter, Outcome};
use invite_worker::wiring;

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_on_one_table_share_one_rate() {
    support::require_stack();
    let env = support::bootstrapped("budget", Transport::Ses).await;
    let sdk = wiring::sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let proxy = reliability_support::FaultProxy::start(1);
    proxy.set(serde_json::json!({"services": {}, "serialize": ["dynamodb:UpdateItem"]}));
    let through_proxy = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .endpoint_url(proxy.url())
            .build(),
    );
    let budget: Arc<dyn RateBudget> = Arc::new(DynamoRateBudget::new(
        through_proxy,
        env.settings.table.name.clone(),
    ));
    let rate = 10.0;
    let wall = system_wall_clock();
    let limiters: Vec<Arc<FleetLimiter>> = (0..3)
        .map(|_| {
            Arc::new(FleetLimiter::with_wall_clock(
                "ci-test",
                budget.clone(),
                rate,
                wall.clone(),
            ))
        })
        .collect();

    // Start at a window boundary, run three whole windows with eight callers per worker.
    let now = wall();
    tokio::time::sleep(Duration::from_secs_f64(now.ceil() - now)).await;
    let start = wall().floor();
    let until = start + 3.0;
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for limiter in &limiters {
        for _ in 0..8 {
            let (limiter, calls, wall) = (limiter.clone(), calls.clone(), wall.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let permit = limiter.acquire().await;
                    let t = wall();
                    if t >= until {
                        break;
                    }
                    calls.lock().unwrap().push(t);
                    limiter.record(permit, Outcome::Success);
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let calls = calls.lock().unwrap().clone();
    for w in 0..3 {
        let in_window = calls
            .iter()
            .filter(|t| **t >= start + f64::from(w) && **t < start + f64::from(w + 1))
            .count();
        // The rate, or a ticket fewer when a lease came back after its slot's window.
        assert!(
            (8..=10).contains(&in_window),
            "window {w}: {in_window} calls for a fleet rate of {rate}/s"
        );
    }

    // The window item: a counter with a ttl, under its own partition key.
    let item = client
        .get_item()
        .table_name(&env.settings.table.name)
        .key(
            ATTR_PK,
            AttributeValue::S(format!("{BUDGET_PK_PREFIX}ci-test")),
        )
        .key(ATTR_SK, AttributeValue::S((start as u64).to_string()))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem")
        .item
        .expect("the first window's item");
    let granted: u64 = item[ATTR_GRANTED].as_n().unwrap().parse().unwrap();
    assert!(granted >= 10, "granted {granted}");
    let ttl: u64 = item[ATTR_TTL].as_n().unwrap().parse().unwrap();
    assert!(ttl > start as u64, "ttl {ttl}");

    // Budget items are invisible to the invite queries.
    let c = support::components(&env).await;
    for status in [InviteStatus::Pending, InviteStatus::Sent] {
        let page = c
            .store
            .list_by_status(status, 50, None)
            .await
            .expect("by status");
        assert!(page.items.is_empty(), "{status:?}: {:?}", page.items);
    }
    let far = time::OffsetDateTime::now_utc() + time::Duration::days(3650);
    let open = c.store.open_expired(far, 50, None).await.expect("open");
    assert!(open.items.is_empty());
    assert!(c
        .store
        .with_unpublished(50)
        .await
        .expect("outbox")
        .is_empty());
}
