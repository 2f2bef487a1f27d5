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

/// A CNI or netavark call's budget for its steps, and when its answer is due: the plugin
/// binaries (`kuryr-cni`, `kuryr-netavark`) give up on the daemon after 55 s.
pub const PLUGIN_STEPS: Duration = Duration::from_secs(45);
pub const PLUGIN_ANSWER: Duration = Duration::from_secs(50);

/// Why a detached call has no result to answer with.
#[derive(Debug, PartialEq, Eq)]
pub enum Unfinished {
    /// The answer was due first; the call goes on (and undoes itself if it fails).
    Late,
    /// The call's task panicked or was cancelled.
    Failed(String),
}

/// Waits `answer` for a call run as a task of its own (`tokio::spawn(within(..))`),
/// which is never dropped half-way (the answer being due, the client going away), so what
/// it made is either kept, as answered, or undone by its own error path.
pub async fn answered<T>(
    answer: Duration,
    task: tokio::task::JoinHandle<T>,
) -> Result<T, Unfinished> {
    match tokio::time::timeout(answer, task).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(Unfinished::Failed(e.to_string())),
        Err(_) => Err(Unfinished::Late),
    }
}

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
    async fn a_detached_call_goes_on_after_its_answer_is_due() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(within(Duration::from_secs(20), async move {
            assert_eq!(remaining(), Some(Duration::from_secs(20)), "its budget");
            tokio::time::sleep(Duration::from_secs(5)).await;
            let _ = tx.send("finished");
        }));
        let late = answered(Duration::from_secs(1), task).await;
        assert_eq!(late, Err(Unfinished::Late));
        assert_eq!(rx.await, Ok("finished"), "the task was not dropped");
        let on_time = answered(Duration::from_secs(1), tokio::spawn(async { 7 })).await;
        assert_eq!(on_time, Ok(7));
    }

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
