//! Delays: how long a failed message stays invisible before its next attempt, and the backon
//! presets the worker uses for its own SQS calls.

use std::time::Duration;

use backon::ExponentialBuilder;

/// SQS's upper bound for a message's visibility timeout (12 hours).
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);

/// The delay before a failed message is tried again: exponential in `receive_count` from
/// `base` (`base * 2^(receive_count - 1)`), capped at `max` and at [`MAX_VISIBILITY`], with full
/// jitter (`random` in `[0, 1)` picks a point between zero and that ceiling). `floor` (a
/// handler's `Retry.after`, e.g. a throttling hint) is a lower bound, itself capped at
/// [`MAX_VISIBILITY`].
///
/// The result is rounded up to whole seconds because SQS visibility timeouts are whole seconds.
/// Pure: the caller supplies the random value, so tests can pin it.
pub fn retry_delay(
    receive_count: u32,
    base: Duration,
    max: Duration,
    floor: Option<Duration>,
    random: f64,
) -> Duration {
    let exponent = receive_count.saturating_sub(1).min(62);
    let growth = 2f64.powi(exponent as i32);
    let cap = max.min(MAX_VISIBILITY).as_secs_f64();
    let ceiling = (base.as_secs_f64() * growth).min(cap);
    let random = if random.is_finite() {
        random.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let jittered = ceiling * random;
    let floor = floor
        .unwrap_or(Duration::ZERO)
        .min(MAX_VISIBILITY)
        .as_secs_f64();
    let seconds = jittered.max(floor).ceil().min(MAX_VISIBILITY.as_secs_f64());
    Duration::from_secs(seconds as u64)
}

/// [`retry_delay`] with a fresh random value.
pub fn random_retry_delay(
    receive_count: u32,
    base: Duration,
    max: Duration,
    floor: Option<Duration>,
) -> Duration {
    retry_delay(receive_count, base, max, floor, rand::random::<f64>())
}

/// Retries for one SQS call the worker makes itself (delete batches, dead-letter sends): a couple
/// of quick attempts, since the message comes back on its own if they all fail.
pub fn sqs_call() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(2)
        .with_jitter()
        .with_jitter_seed(rand::random())
}

/// Pauses between failed receives: from half a second up to about 30 seconds (15 s plus up to
/// 100 % jitter), forever — the worker never gives up on its queue.
pub fn receive_errors() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(15))
        .without_max_times()
        .with_jitter()
        .with_jitter_seed(rand::random())
}

#[cfg(test)]
mod tests {
    use backon::BackoffBuilder;

    use super::*;

    const BASE: Duration = Duration::from_secs(5);
    const MAX: Duration = Duration::from_secs(900);

    #[test]
    fn ceiling_doubles_with_each_receive() {
        // random just below 1 gives (almost) the ceiling; rounding up makes it exact.
        let top = |n| retry_delay(n, BASE, MAX, None, 0.999_999);
        assert_eq!(top(1), Duration::from_secs(5));
        assert_eq!(top(2), Duration::from_secs(10));
        assert_eq!(top(3), Duration::from_secs(20));
        assert_eq!(top(4), Duration::from_secs(40));
    }

    #[test]
    fn capped_at_max_and_twelve_hours() {
        assert_eq!(retry_delay(30, BASE, MAX, None, 0.999_999), MAX);
        assert_eq!(
            retry_delay(u32::MAX, BASE, Duration::from_secs(100_000), None, 1.0),
            MAX_VISIBILITY
        );
    }

    #[test]
    fn full_jitter_spans_zero_to_ceiling() {
        assert_eq!(retry_delay(3, BASE, MAX, None, 0.0), Duration::ZERO);
        assert_eq!(
            retry_delay(3, BASE, MAX, None, 0.5),
            Duration::from_secs(10)
        );
        for _ in 0..1000 {
            let d = random_retry_delay(3, BASE, MAX, None);
            assert!(d <= Duration::from_secs(20), "{d:?}");
        }
    }

    #[test]
    fn floor_is_a_lower_bound() {
        let floor = Some(Duration::from_secs(60));
        assert_eq!(
            retry_delay(1, BASE, MAX, floor, 0.0),
            Duration::from_secs(60)
        );
        // The jittered value wins when it is larger.
        assert_eq!(
            retry_delay(10, BASE, MAX, Some(Duration::from_secs(1)), 0.5),
            Duration::from_secs(450)
        );
        // Even a floor obeys SQS's 12-hour limit.
        assert_eq!(
            retry_delay(1, BASE, MAX, Some(Duration::from_secs(100_000)), 0.0),
            MAX_VISIBILITY
        );
    }

    #[test]
    fn rounds_up_to_whole_seconds_and_tolerates_odd_input() {
        assert_eq!(
            retry_delay(1, Duration::from_millis(300), MAX, None, 0.5),
            Duration::from_secs(1)
        );
        assert_eq!(retry_delay(0, BASE, MAX, None, f64::NAN), Duration::ZERO);
        assert_eq!(retry_delay(1, BASE, MAX, None, 7.0), BASE);
    }

    #[test]
    fn sqs_preset_gives_up_after_a_couple_of_tries() {
        let delays: Vec<_> = sqs_call().build().collect();
        assert_eq!(delays.len(), 2);
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(4)));
    }

    #[test]
    fn receive_preset_never_ends_and_stays_under_thirty_seconds() {
        let delays: Vec<_> = receive_errors().build().take(50).collect();
        assert_eq!(delays.len(), 50);
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(30)));
        assert!(delays[0] < Duration::from_secs(1));
    }
}
