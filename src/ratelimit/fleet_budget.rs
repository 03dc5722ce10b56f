//! [`FleetLimiter`]: one worker's share of a rate budget that the whole fleet draws on.
//!
//! The fleet's rate `r` is cut into one-second windows of wall-clock time. Window `w` holds the
//! tickets numbered `ceil(w·r) .. ceil((w+1)·r)`, and ticket `g` may be used from `g / r`
//! seconds after the epoch: the fleet's calls are spread evenly over the second, whichever
//! worker holds them. A worker leases a few tickets at a time from the shared counter of the
//! window ([`RateBudget::take`], one atomic add); tickets past the window's last one are void,
//! and so are tickets left when the window ends (a killed worker strands at most one window's
//! lease). A worker asks for as many tickets as it has callers waiting, at most a quarter of a
//! window, so idle workers hold nothing and busy ones share the window.
//!
//! On top of the budget, each worker adapts to what it cannot see (other consumers of the same
//! account quota): a throttling answer cuts its own rate to 4/5 of what it sent over the last
//! two seconds (at most once per two seconds: answers to calls made before the cut, or just
//! after it, do not cut again), and every success raises it by 0.5 % (up to 1.5 % after a
//! minute without throttling: slow right after a cut, faster once the pressure is gone), up to
//! the fleet's rate. When the budget cannot be reached, the worker goes on at its own adaptive
//! rate for the rest of the window and tries the budget again in the next.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Mutex;
use tokio::time::{Duration, Instant};

use super::wait_limit::{Backlog, Waiting};
use crate::ports::RateBudget;

/// Wall-clock time in seconds since the unix epoch (the windows are shared across hosts).
pub type WallClock = Arc<dyn Fn() -> f64 + Send + Sync>;

/// The system's wall clock.
pub fn system_wall_clock() -> WallClock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    })
}

/// A wall clock that starts at `start_unix` and moves with tokio's clock (paused in tests).
pub fn tokio_wall_clock(start_unix: f64) -> WallClock {
    let origin = Instant::now();
    Arc::new(move || start_unix + origin.elapsed().as_secs_f64())
}

/// A throttling answer leaves this share of the recent rate.
const DECREASE: f64 = 0.8;
/// Each success adds this share of the current rate (or of a tenth of the maximum, if more),
/// times `1 + seconds since the last cut / QUIET_SECONDS`: slow right after a cut, faster the
/// longer the quota stays quiet (so a worker cut back does not crawl once the pressure is gone).
const INCREASE: f64 = 0.005;
const QUIET_SECONDS: f64 = 30.0;
/// After a cut, throttling answers are ignored this long (the recent rate must show the cut).
const COOLDOWN_SECONDS: f64 = 2.0;
/// The recent rate is measured over this many seconds.
const RECENT_SECONDS: f64 = 2.0;
/// The adaptive rate never falls below this share of the fleet's rate.
const MIN_SHARE: f64 = 0.05;
/// A lease asks for at most this share of a window's tickets.
const LEASE_SHARE: f64 = 0.25;

/// Proof of a granted call; hand it back with the outcome to [`FleetLimiter::record`].
#[derive(Clone, Copy, Debug)]
pub struct Permit {
    issued_at: f64,
}

/// What a call's answer says about the rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Throttled,
    /// Any other failure: says nothing about the rate.
    Other,
}

struct Tickets {
    /// The window the held tickets belong to.
    window: u64,
    /// Next held ticket (global number) and one past the last.
    next: u64,
    end: u64,
    /// A window known to have no tickets left.
    spent: Option<u64>,
    /// A window in which the budget could not be reached.
    unmetered: Option<u64>,
}

struct Adaptive {
    /// This worker's own rate cap, calls per second.
    rate: f64,
    max: f64,
    min: f64,
    /// Wall time before which the next call must not start (pacing at `rate`).
    next_at: f64,
    /// Wall time of the last cut.
    cut_at: f64,
    /// Wall times of recent calls.
    recent: VecDeque<f64>,
}

impl Adaptive {
    fn recent_rate(&mut self, now: f64) -> f64 {
        while self
            .recent
            .front()
            .is_some_and(|t| *t <= now - RECENT_SECONDS)
        {
            self.recent.pop_front();
        }
        self.recent.len() as f64 / RECENT_SECONDS
    }
}

/// One worker's side of a fleet-wide rate budget. Share one per budget within a process.
pub struct FleetLimiter {
    name: String,
    budget: Arc<dyn RateBudget>,
    rate: f64,
    lease_max: u32,
    wall: WallClock,
    waiting: Waiting,
    tickets: Mutex<Tickets>,
    adaptive: std::sync::Mutex<Adaptive>,
}

impl fmt::Debug for FleetLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetLimiter")
            .field("name", &self.name)
            .field("rate", &self.rate)
            .field("own_rate", &self.own_rate())
            .finish_non_exhaustive()
    }
}

impl FleetLimiter {
    /// A limiter drawing on budget `name` (e.g. `cognito-create`) of `rate_per_second` for the
    /// whole fleet, on the system's wall clock.
    pub fn new(name: &str, budget: Arc<dyn RateBudget>, rate_per_second: f64) -> Self {
        Self::with_wall_clock(name, budget, rate_per_second, system_wall_clock())
    }

    /// [`FleetLimiter::new`] on another wall clock (tests: [`tokio_wall_clock`]).
    pub fn with_wall_clock(
        name: &str,
        budget: Arc<dyn RateBudget>,
        rate_per_second: f64,
        wall: WallClock,
    ) -> Self {
        let rate = super::usable_rate(rate_per_second);
        let lease_max = (rate * LEASE_SHARE).ceil().clamp(1.0, 1000.0) as u32;
        Self {
            name: name.to_string(),
            budget,
            rate,
            lease_max,
            wall,
            waiting: Waiting::default(),
            tickets: Mutex::new(Tickets {
                window: 0,
                next: 0,
                end: 0,
                spent: None,
                unmetered: None,
            }),
            adaptive: std::sync::Mutex::new(Adaptive {
                rate,
                max: rate,
                min: rate * MIN_SHARE,
                next_at: 0.0,
                cut_at: f64::NEG_INFINITY,
                recent: VecDeque::new(),
            }),
        }
    }

    /// The fleet's rate, calls per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// This worker's own adaptive cap, calls per second (the fleet's rate until throttled).
    pub fn own_rate(&self) -> f64 {
        self.adaptive.lock().expect("adaptive lock").rate
    }

    /// Waits for this worker's pace and a ticket of the fleet's budget. Cancel-safe: a dropped
    /// call uses no ticket.
    pub async fn acquire(&self) -> Permit {
        let _waiting = self.waiting.enter();
        // Holding the lock while sleeping is the point: callers queue in arrival order.
        let mut tickets = self.tickets.lock().await;
        let pace = {
            let a = self.adaptive.lock().expect("adaptive lock");
            (a.rate < a.max).then_some(a.next_at)
        };
        if let Some(at) = pace {
            self.sleep_until(at).await;
        }
        match self.next_ticket(&mut tickets).await {
            Some(slot) => {
                self.sleep_until(slot).await;
                tickets.next += 1;
            }
            // Out of the budget's reach: this worker's own pace is all there is.
            None => {
                let at = self.adaptive.lock().expect("adaptive lock").next_at;
                self.sleep_until(at).await;
            }
        }
        let now = (self.wall)();
        let mut a = self.adaptive.lock().expect("adaptive lock");
        a.next_at = a.next_at.max(now) + 1.0 / a.rate;
        a.recent.push_back(now);
        a.recent_rate(now);
        Permit { issued_at: now }
    }

    /// Tells the limiter how a call made under `permit` went.
    pub fn record(&self, permit: Permit, outcome: Outcome) {
        let now = (self.wall)();
        let mut a = self.adaptive.lock().expect("adaptive lock");
        match outcome {
            Outcome::Success => {
                let quiet = (now - a.cut_at).clamp(0.0, 60.0);
                let step = INCREASE * a.rate.max(a.max * 0.1) * (1.0 + quiet / QUIET_SECONDS);
                a.rate = (a.rate + step).min(a.max);
            }
            // One cut per round trip and cooldown: answers to calls sent before the last cut,
            // or just after it, are old news.
            Outcome::Throttled if permit.issued_at >= a.cut_at + COOLDOWN_SECONDS => {
                let recent = a.recent_rate(now);
                a.rate = (DECREASE * recent.min(a.rate)).max(a.min);
                a.cut_at = now;
                tracing::info!(
                    budget = %self.name,
                    own_rate = a.rate,
                    "throttled: this worker slows down"
                );
            }
            Outcome::Throttled | Outcome::Other => {}
        }
    }

    /// The first and one-past-the-last ticket of window `w`.
    fn window_range(&self, w: u64) -> (u64, u64) {
        let at = |s: u64| (s as f64 * self.rate - 1e-6).ceil().max(0.0) as u64;
        (at(w), at(w + 1))
    }

    /// The slot time of the next held ticket (leasing more when none is held), or `None` when
    /// the budget is out of reach in this window.
    async fn next_ticket(&self, t: &mut Tickets) -> Option<f64> {
        loop {
            let now = (self.wall)();
            let w = now.floor().max(0.0) as u64;
            if t.window == w && t.next < t.end {
                return Some(t.next as f64 / self.rate);
            }
            if t.unmetered == Some(w) {
                return None;
            }
            let (first, last) = self.window_range(w);
            if t.spent == Some(w) || first >= last {
                self.sleep_until((w + 1) as f64).await;
                continue;
            }
            let own = self.own_rate();
            let usable = (own * ((w + 1) as f64 - now)).ceil().max(1.0);
            let waiting = Backlog::waiting(self).max(1) as f64;
            let want = waiting
                .min(usable)
                .min(f64::from(self.lease_max))
                .min((last - first) as f64) as u32;
            match self.budget.take(&self.name, w, want).await {
                Ok(before) => {
                    let start = first.saturating_add(before);
                    let end = start.saturating_add(u64::from(want)).min(last);
                    if end >= last {
                        t.spent = Some(w);
                    }
                    if start < end {
                        (t.window, t.next, t.end) = (w, start, end);
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        budget = %self.name,
                        error = %e,
                        "fleet rate budget unreachable: this worker goes on at its own rate for this second"
                    );
                    t.unmetered = Some(w);
                    return None;
                }
            }
        }
    }

    async fn sleep_until(&self, at: f64) {
        let wait = at - (self.wall)();
        if wait > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
}

impl Backlog for FleetLimiter {
    fn name(&self) -> &str {
        &self.name
    }

    /// This worker's own rate: after a throttling cut it, not the fleet's, paces the callers.
    fn rate(&self) -> f64 {
        self.own_rate()
    }

    fn waiting(&self) -> usize {
        self.waiting.count()
    }
}

#[cfg(test)]
mod tests;
