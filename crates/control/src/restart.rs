//! When to restart a cluster node that exited on its own.
//!
//! The first crash is restarted at once; a node that keeps crashing waits 1 s, 2 s, 4 s, …
//! up to [`RestartPolicy::cap`] between attempts, so a crash loop (a poisoned WAL record,
//! a query replayed by an eager client) costs little CPU and leaves a readable log. A node
//! that then stays healthy for [`RestartPolicy::stable_after`] starts the schedule over.

use std::time::{Duration, Instant};

/// The restart schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// The delay before the second restart in a row; it doubles with each further crash.
    pub base: Duration,
    /// The longest delay.
    pub cap: Duration,
    /// How long a node must stay healthy for its next crash to count as the first again.
    pub stable_after: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            stable_after: Duration::from_secs(120),
        }
    }
}

impl RestartPolicy {
    /// The delay before restarting after the `streak`-th crash in a row (1-based):
    /// 0, base, 2·base, 4·base, … capped.
    pub fn delay(&self, streak: u32) -> Duration {
        match streak {
            0 | 1 => Duration::ZERO,
            n => {
                let factor = 1u32.checked_shl(n - 2).unwrap_or(u32::MAX);
                self.base.saturating_mul(factor).min(self.cap)
            }
        }
    }
}

/// The crash streak of one cluster's node.
#[derive(Debug)]
pub(crate) struct Backoff {
    policy: RestartPolicy,
    streak: u32,
    /// When the current node became healthy, if it did since the last crash.
    healthy_since: Option<Instant>,
}

impl Backoff {
    pub(crate) fn new(policy: RestartPolicy) -> Backoff {
        Backoff {
            policy,
            streak: 0,
            healthy_since: None,
        }
    }

    /// The node (re)started and reached the state the control plane wants at `now`.
    pub(crate) fn healthy(&mut self, now: Instant) {
        self.healthy_since.get_or_insert(now);
    }

    /// The node died at `now`: how long to wait before starting it again.
    pub(crate) fn crashed(&mut self, now: Instant) -> Duration {
        if let Some(since) = self.healthy_since.take()
            && now.saturating_duration_since(since) >= self.policy.stable_after
        {
            self.streak = 0;
        }
        self.streak = self.streak.saturating_add(1);
        self.policy.delay(self.streak)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_from_zero_up_to_the_cap() {
        let policy = RestartPolicy::default();
        let delays: Vec<u64> = (1..=10).map(|n| policy.delay(n).as_secs()).collect();
        assert_eq!(delays, [0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(policy.delay(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn a_crash_loop_waits_longer_each_time() {
        let mut backoff = Backoff::new(RestartPolicy::default());
        let t0 = Instant::now();
        // Restarted, healthy for a moment, crashed again: the streak goes on.
        let mut delays = Vec::new();
        for i in 0..5 {
            let at = t0 + Duration::from_secs(i * 10);
            delays.push(backoff.crashed(at).as_secs());
            backoff.healthy(at + Duration::from_secs(1));
        }
        assert_eq!(delays, [0, 1, 2, 4, 8]);
        // A node that never becomes healthy keeps the streak growing too.
        let mut never = Backoff::new(RestartPolicy::default());
        let delays: Vec<u64> = (0..4).map(|_| never.crashed(t0).as_secs()).collect();
        assert_eq!(delays, [0, 1, 2, 4]);
    }

    #[test]
    fn a_node_healthy_for_a_while_starts_the_schedule_over() {
        let policy = RestartPolicy::default();
        let mut backoff = Backoff::new(policy);
        let t0 = Instant::now();
        for _ in 0..4 {
            backoff.crashed(t0);
        }
        backoff.healthy(t0);
        let later = t0 + policy.stable_after;
        assert_eq!(backoff.crashed(later), Duration::ZERO);
        // Just short of the window, the streak continues.
        backoff.healthy(later);
        let soon = later + policy.stable_after - Duration::from_secs(1);
        assert_eq!(backoff.crashed(soon), policy.base);
    }
}
