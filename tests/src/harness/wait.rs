//! Waiting for a condition by polling with a deadline.

use std::time::{Duration, Instant};

/// How often [`wait_until`] polls.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `condition` until it returns `Some`, or fails with `what` once `timeout` has passed.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = condition() {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_once_the_condition_holds() {
        let mut calls = 0;
        let value = wait_until("the third call", Duration::from_secs(5), || {
            calls += 1;
            (calls == 3).then_some(calls)
        })
        .expect("holds on the third call");
        assert_eq!(value, 3);
    }

    #[test]
    fn fails_naming_what_it_waited_for() {
        let err =
            wait_until::<()>("never", Duration::from_millis(50), || None).expect_err("never holds");
        assert!(err.to_string().contains("never"), "{err}");
    }
}
