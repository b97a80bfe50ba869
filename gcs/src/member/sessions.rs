//! The leader's session expiry: while its member leads, a task proposes
//! [`Operation::ExpireSessions`] every [`SessionRetention::interval`],
//! carrying the time it measured since its previous proposal (see
//! [`crate::kv::sessions`] for why the state machine's clock is made of
//! those, not read from a wall clock). The decision when to propose is the
//! pure [`ExpiryTicker`]; this task only feeds it and proposes.

use openraft::ServerState;
use tokio::time::Instant;
use tracing::debug;

use crate::command::{Command, Operation};
use crate::kv::sessions::{ExpiryTicker, SessionRetention};
use crate::member::proposer::Proposer;
use crate::response::Outcome;
use crate::types::Raft;

/// Runs until aborted.
pub(crate) async fn run(raft: Raft, proposer: Proposer, retention: SessionRetention) {
    let interval = retention.interval();
    let idle_ms = retention.idle_ms();
    let mut ticker = ExpiryTicker::default();
    // Checked a few times per interval: the tick is never more than a
    // quarter interval late.
    let mut every = tokio::time::interval(interval / 4);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let leading = raft.metrics().borrow().state == ServerState::Leader;
        let Some(elapsed) = ticker.tick(Instant::now(), leading, interval) else {
            continue;
        };
        let command = Command::new(Operation::ExpireSessions {
            elapsed_ms: elapsed.as_millis() as u64,
            idle_ms,
        });
        match proposer.write(command).await {
            Ok(response) => {
                if let Ok(Outcome::SessionsExpired { expired, clock_ms }) = response.outcome {
                    if expired > 0 {
                        debug!(expired, clock_ms, "expired idle client sessions");
                    }
                }
            }
            // Lost leadership meanwhile: the next leader ticks.
            Err(e) => debug!(error = %e, "could not propose a session expiry"),
        }
    }
}
