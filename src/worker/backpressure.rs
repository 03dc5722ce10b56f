//! Back-pressure from the rate limiters: the worker takes no more messages than it can start
//! within their handler timeout.
//!
//! Waiting for a rate limiter counts against a handler's timeout. When a limiter slows down (a
//! throttling answer cuts a worker's own rate, [`crate::ratelimit::fleet_budget`]), messages
//! received at the usual pace queue up behind it; past the timeout their handlers used to be
//! aborted mid-operation and the messages retried until dead-lettered, though nothing was wrong
//! with them. Two rules keep that from happening:
//!
//! - **Receive only what can start in time.** Each message in flight may need a slot of every
//!   limiter, so the worker holds at most what the slowest one serves in a quarter of the
//!   handler timeout ([`room`], [`admit_within`]: a third of the wait budget, leaving slack for
//!   the handler's other calls and for a rate cut after a message came in) and asks the queue
//!   for no more than that; with no room it pauses receiving. Messages left on the queue spend
//!   no attempts.
//! - **Never wait past the handler's deadline.** Every handler runs with a wait deadline of
//!   [`wait_deadline`] (three quarters of its timeout): a limiter whose next slot comes later
//!   gives up before the call with a transient error saying when that slot comes, so the handler
//!   releases its lease and the message comes back after about that wait. The last quarter of
//!   the timeout is for the call itself and the record written after it.

use std::sync::Arc;
use std::time::Duration;

use crate::ratelimit::Backlog;

/// How long after it starts a handler may still be waiting for a rate limiter: three quarters
/// of its timeout, leaving the last quarter for the call after the wait and the record written
/// after it (the email is the last limited call of an invite).
pub fn wait_deadline(handler_timeout: Duration) -> Duration {
    handler_timeout * 3 / 4
}

/// The worker holds no more messages than each limiter serves in this long: a quarter of the
/// handler timeout, a third of the wait budget, so that a message taken at the limit still gets
/// its slots in time after its other calls (claim, Cognito, their retries), when a limiter's
/// rate is cut after it came in, or when it waits for two limiters one after the other.
pub fn admit_within(handler_timeout: Duration) -> Duration {
    handler_timeout / 4
}

/// How many more messages the worker may take now, with `in_flight` held: the fewest any of
/// `limiters` serves within [`admit_within`] (`rate × handler_timeout / 4`, rounded up; callers
/// already waiting counted if there are more of them than messages in flight: another task may
/// share the limiter), less those in flight. `None`: no limiter, no limit. At least one message
/// may always be in flight, however slow a limiter.
pub fn room(
    limiters: &[Arc<dyn Backlog>],
    in_flight: usize,
    handler_timeout: Duration,
) -> Option<usize> {
    let within = admit_within(handler_timeout).as_secs_f64();
    limiters
        .iter()
        .map(|limiter| {
            let capacity = (limiter.rate() * within).ceil().max(1.0) as usize;
            capacity.saturating_sub(in_flight.max(limiter.waiting()))
        })
        .min()
}

/// The slowest of `limiters` now, for the log line of a pause: its name, rate and backlog.
pub fn slowest(limiters: &[Arc<dyn Backlog>]) -> Option<(String, f64, Duration)> {
    limiters
        .iter()
        .min_by(|a, b| a.rate().total_cmp(&b.rate()))
        .map(|l| (l.name().to_string(), l.rate(), l.backlog()))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    struct Fixed {
        name: &'static str,
        rate: Mutex<f64>,
        waiting: usize,
    }

    impl Backlog for Fixed {
        fn name(&self) -> &str {
            self.name
        }
        fn rate(&self) -> f64 {
            *self.rate.lock().unwrap()
        }
        fn waiting(&self) -> usize {
            self.waiting
        }
    }

    fn fixed(name: &'static str, rate: f64, waiting: usize) -> Arc<Fixed> {
        Arc::new(Fixed {
            name,
            rate: Mutex::new(rate),
            waiting,
        })
    }

    #[test]
    fn room_is_what_the_slowest_limiter_serves_within_a_quarter_of_the_timeout() {
        let timeout = Duration::from_secs(8);
        let email = fixed("email-send", 14.0, 0);
        let reads = fixed("cognito-read", 50.0, 0);
        let limiters: Vec<Arc<dyn Backlog>> = vec![email.clone(), reads];
        // 14/s for 2 s: 28 messages.
        assert_eq!(room(&limiters, 0, timeout), Some(28));
        assert_eq!(room(&limiters, 22, timeout), Some(6));
        assert_eq!(room(&limiters, 64, timeout), Some(0));
        // Cut to 0.7/s: 1.4 messages in 2 s, rounded up.
        *email.rate.lock().unwrap() = 0.7;
        assert_eq!(room(&limiters, 0, timeout), Some(2));
        assert_eq!(room(&limiters, 2, timeout), Some(0));
        // However slow, one message may go.
        *email.rate.lock().unwrap() = 0.01;
        assert_eq!(room(&limiters, 0, timeout), Some(1));
        assert_eq!(room(&limiters, 1, timeout), Some(0));
        assert_eq!(room(&[], 1000, timeout), None);
    }

    #[test]
    fn callers_waiting_from_elsewhere_count_too() {
        let relay = fixed("email-send", 1.0, 3);
        let limiters: Vec<Arc<dyn Backlog>> = vec![relay];
        // 1/s for 5 s: 5, of which 3 are taken by callers from elsewhere.
        assert_eq!(room(&limiters, 0, Duration::from_secs(20)), Some(2));
        assert_eq!(room(&limiters, 4, Duration::from_secs(20)), Some(1));
        let (name, rate, backlog) = slowest(&limiters).unwrap();
        assert_eq!((name.as_str(), rate), ("email-send", 1.0));
        assert_eq!(backlog, Duration::from_secs(3));
    }

    #[test]
    fn the_wait_budget_is_three_quarters_of_the_handler_timeout_and_admission_a_quarter() {
        let (eight, forty_five) = (Duration::from_secs(8), Duration::from_secs(45));
        assert_eq!(wait_deadline(eight), Duration::from_secs(6));
        assert_eq!(admit_within(eight), Duration::from_secs(2));
        assert_eq!(wait_deadline(forty_five), Duration::from_millis(33750));
        assert_eq!(admit_within(forty_five), Duration::from_millis(11250));
    }
}
