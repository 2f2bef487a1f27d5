//! A libnetwork call's time budget, carried with the call's task. The server gives each
//! call one; the steps below it (Neutron and Keystone requests and their retries, waiting
//! for a port to go ACTIVE) stop when it runs out, so the handler's own error path, the
//! one that undoes what the call made, runs in time. A handler is never dropped half-way:
//! the server runs it as a task of its own that finishes even if the answer was already
//! given (deadline) or the client went away.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// How long a call's steps may take; its answer is due a little later
/// (`server::CALL_DEADLINE`).
pub const STEPS: Duration = Duration::from_secs(20);

/// What undoing a failed call gets, whatever the call had left.
pub const UNDO: Duration = Duration::from_secs(10);

/// Runs `f` with `budget` from now.
pub async fn within<F: Future>(budget: Duration, f: F) -> F::Output {
    DEADLINE.scope(Instant::now() + budget, f).await
}

/// Runs an undo with a fresh budget: a call that ran out of time still gets to give back
/// what it made.
pub async fn undo<F: Future>(f: F) -> F::Output {
    within(UNDO, f).await
}

/// Time left; `None` outside a call (background work has only per-request timeouts).
pub fn remaining() -> Option<Duration> {
    DEADLINE
        .try_with(|d| d.saturating_duration_since(Instant::now()))
        .ok()
}

/// `d`, or less if the call has less left.
pub fn cap(d: Duration) -> Duration {
    remaining().map_or(d, |r| r.min(d))
}

/// The call's budget is spent.
pub fn expired() -> bool {
    remaining().is_some_and(|r| r.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_budget_runs_out_and_an_undo_gets_a_fresh_one() {
        assert_eq!(remaining(), None, "no budget outside a call");
        assert_eq!(cap(Duration::from_secs(30)), Duration::from_secs(30));
        within(Duration::from_secs(2), async {
            assert_eq!(cap(Duration::from_secs(30)), Duration::from_secs(2));
            tokio::time::sleep(Duration::from_secs(3)).await;
            assert!(expired());
            undo(async {
                assert!(!expired());
                assert_eq!(remaining(), Some(UNDO));
            })
            .await;
            assert!(expired(), "the undo's budget ends with it");
        })
        .await;
    }
}
