use std::sync::Mutex as StdMutex;

use super::*;
use crate::adapters::memory::MemoryRateBudget;

/// A window boundary, so that window numbers are easy to read.
const START: f64 = 1_000_000.0;

fn fleet(
    n: usize,
    rate: f64,
    budget: &Arc<MemoryRateBudget>,
    wall: &WallClock,
) -> Vec<Arc<FleetLimiter>> {
    (0..n)
        .map(|_| {
            Arc::new(FleetLimiter::with_wall_clock(
                "test",
                budget.clone() as Arc<dyn RateBudget>,
                rate,
                wall.clone(),
            ))
        })
        .collect()
}

/// `callers` tasks per limiter, each calling until `until` (wall seconds); the wall times of
/// every call, per limiter.
async fn run(
    limiters: &[Arc<FleetLimiter>],
    callers: usize,
    until: f64,
    wall: &WallClock,
) -> Vec<Vec<f64>> {
    let calls: Vec<Arc<StdMutex<Vec<f64>>>> = limiters.iter().map(|_| Arc::default()).collect();
    let mut tasks = Vec::new();
    for (limiter, log) in limiters.iter().zip(&calls) {
        for _ in 0..callers {
            let (limiter, log, wall) = (limiter.clone(), log.clone(), wall.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let permit = limiter.acquire().await;
                    let now = wall();
                    if now >= until {
                        break;
                    }
                    log.lock().unwrap().push(now);
                    limiter.record(permit, Outcome::Success);
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    calls.iter().map(|c| c.lock().unwrap().clone()).collect()
}

/// The most calls in any interval of `width` seconds.
fn densest(times: &[f64], width: f64) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..sorted.len() {
        while sorted[hi] - sorted[lo] >= width - 1e-9 {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

#[tokio::test(start_paused = true)]
async fn three_busy_workers_share_the_fleet_rate_evenly_spread() {
    let wall = tokio_wall_clock(START);
    let budget = Arc::new(MemoryRateBudget::default());
    let limiters = fleet(3, 8.0, &budget, &wall);
    let calls = run(&limiters, 20, START + 10.0, &wall).await;
    let all: Vec<f64> = calls.iter().flatten().copied().collect();
    // Ten seconds at eight per second, for the three together.
    assert!((78..=80).contains(&all.len()), "{} calls", all.len());
    // Never more than the rate in any second, wherever the second starts.
    assert!(
        densest(&all, 1.0) <= 8,
        "densest second: {}",
        densest(&all, 1.0)
    );
    // Spread over the second, not bunched at its start.
    assert!(
        densest(&all, 0.25) <= 2,
        "densest quarter: {}",
        densest(&all, 0.25)
    );
    // Every worker got a share.
    for (i, c) in calls.iter().enumerate() {
        assert!(c.len() >= 15, "worker {i} made {} calls", c.len());
    }
    // The coordination cost: at most a lease per quarter window plus one per worker, per second.
    // The coordination cost: a lease per quarter window plus one wasted ask per other worker,
    // per window (the callers go on past the end, so count the windows used).
    let windows = (0..40u64)
        .filter(|w| budget.count("test", START as u64 + w) > 0)
        .count() as f64;
    let per_window = budget.calls() as f64 / windows;
    assert!(
        per_window <= 4.0 + 2.0 + 0.5,
        "{per_window} budget calls per window"
    );
}

#[tokio::test(start_paused = true)]
async fn a_worker_alone_gets_the_whole_rate() {
    let wall = tokio_wall_clock(START);
    let budget = Arc::new(MemoryRateBudget::default());
    let limiters = fleet(1, 5.0, &budget, &wall);
    let calls = run(&limiters, 10, START + 4.0, &wall).await;
    assert!((19..=20).contains(&calls[0].len()), "{}", calls[0].len());
}

#[tokio::test(start_paused = true)]
async fn fractional_rates_average_out_over_windows() {
    let wall = tokio_wall_clock(START);
    let budget = Arc::new(MemoryRateBudget::default());
    let limiters = fleet(2, 2.5, &budget, &wall);
    let calls = run(&limiters, 4, START + 8.0, &wall).await;
    let total: usize = calls.iter().map(Vec::len).sum();
    assert!((19..=20).contains(&total), "{total}");
}

#[tokio::test(start_paused = true)]
async fn an_idle_worker_asks_for_nothing() {
    let wall = tokio_wall_clock(START);
    let budget = Arc::new(MemoryRateBudget::default());
    let _limiters = fleet(2, 8.0, &budget, &wall);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(budget.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_killed_workers_lease_is_void_after_its_window() {
    let wall = tokio_wall_clock(START);
    let budget = Arc::new(MemoryRateBudget::default());
    let limiters = fleet(2, 8.0, &budget, &wall);
    // Worker 0 leases a quarter of window 0 with eight callers waiting, uses one ticket and dies.
    let dead = limiters[0].clone();
    let mut waiting: Vec<_> = (0..8)
        .map(|_| {
            let dead = dead.clone();
            tokio::spawn(async move { dead.acquire().await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1)).await;
    for t in waiting.drain(..) {
        t.abort();
    }
    assert!(budget.count("test", START as u64) >= 2, "worker 0 leased");
    // Worker 1 alone, from the next window on, gets the whole rate.
    tokio::time::sleep(Duration::from_secs_f64(1.0 - 0.001)).await;
    let calls = run(&limiters[1..], 10, START + 4.0, &wall).await;
    let after_first: Vec<f64> = calls[0]
        .iter()
        .copied()
        .filter(|t| *t >= START + 1.0)
        .collect();
    assert!(
        (23..=24).contains(&after_first.len()),
        "{}",
        after_first.len()
    );
}

#[tokio::test(start_paused = true)]
async fn throttling_cuts_this_workers_rate_and_success_recovers_it_slowly() {
    let wall = tokio_wall_clock(START);
    let budget = Arc::new(MemoryRateBudget::default());
    let limiter = fleet(1, 8.0, &budget, &wall).remove(0);
    // Two seconds at full rate.
    let mut permits = Vec::new();
    for _ in 0..16 {
        permits.push(limiter.acquire().await);
    }
    assert_eq!(limiter.own_rate(), 8.0);
    let late = *permits.last().unwrap();
    limiter.record(late, Outcome::Throttled);
    let cut = limiter.own_rate();
    assert!((5.0..=6.5).contains(&cut), "cut to {cut}");
    // Answers to calls made before the cut do not cut again.
    limiter.record(permits[10], Outcome::Throttled);
    assert_eq!(limiter.own_rate(), cut);
    // Other failures say nothing.
    limiter.record(late, Outcome::Other);
    assert_eq!(limiter.own_rate(), cut);
    // The worker now runs at its own rate: 12 calls take about 12 / cut seconds.
    let start = Instant::now();
    for _ in 0..12 {
        let p = limiter.acquire().await;
        limiter.record(p, Outcome::Success);
    }
    let took = start.elapsed().as_secs_f64();
    assert!(took >= 11.0 / (cut + 0.5), "{took}s");
    // Slow recovery: a dozen successes do not bring it back.
    assert!(limiter.own_rate() < 8.0 * 0.95, "{}", limiter.own_rate());
    // A thousand do.
    for _ in 0..1000 {
        limiter.record(late, Outcome::Success);
    }
    assert_eq!(limiter.own_rate(), 8.0);
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_budget_falls_back_to_the_workers_own_rate() {
    let wall = tokio_wall_clock(START);
    let budget = Arc::new(MemoryRateBudget::default());
    let limiter = fleet(1, 4.0, &budget, &wall).remove(0);
    budget.fail_next(1);
    let start = Instant::now();
    for _ in 0..4 {
        limiter.acquire().await;
    }
    // One failed lease; the rest of that second runs at the worker's own pace (4/s).
    assert_eq!(budget.calls(), 1);
    assert!(
        start.elapsed() >= Duration::from_millis(740),
        "{:?}",
        start.elapsed()
    );
    // In the next window the budget is asked again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    limiter.acquire().await;
    assert_eq!(budget.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_wait_uses_no_ticket() {
    let wall = tokio_wall_clock(START);
    let budget = Arc::new(MemoryRateBudget::default());
    let limiter = fleet(1, 2.0, &budget, &wall).remove(0);
    limiter.acquire().await; // slot 0 of window 0
    let timed_out = tokio::time::timeout(Duration::from_millis(100), limiter.acquire()).await;
    assert!(timed_out.is_err());
    // The ticket for 0.5 s is still there.
    let start = Instant::now();
    limiter.acquire().await;
    assert!(
        start.elapsed() <= Duration::from_millis(400),
        "{:?}",
        start.elapsed()
    );
}
