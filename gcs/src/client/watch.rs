//! A watch that survives member failures: it resumes from the revision
//! after the last one delivered, on whichever member answers, so events
//! arrive in revision order, none lost and none repeated. It connects to
//! the client's current member list (learned from leaders), and leaves a
//! member that the membership no longer lists: a removed member hears of
//! no new writes, so a watch left on it would stall.

use std::time::Duration;

use futures::StreamExt;
use troupe_core::rpc::RpcStream;

use super::{GcsClient, GcsClientError, Result};
use crate::api::{GcsError, Watch, WatchRequest};
use crate::command::KeySelector;
use crate::model::RevisionEvents;

type Events = RpcStream<std::result::Result<RevisionEvents, GcsError>>;

/// Events of the watched keys, one item per revision.
pub struct WatchStream {
    client: GcsClient,
    selector: KeySelector,
    /// The next revision to deliver.
    next_revision: u64,
    open: Option<Events>,
    /// The address the open stream comes from.
    open_on: String,
    member: usize,
}

impl WatchStream {
    pub(super) fn new(client: GcsClient, selector: KeySelector, from: u64) -> WatchStream {
        WatchStream {
            client,
            selector,
            next_revision: from,
            open: None,
            open_on: String::new(),
            member: 0,
        }
    }

    /// The revision the next event will have at least.
    pub fn next_revision(&self) -> u64 {
        self.next_revision
    }

    /// The next revision's events. Reconnects by itself (to any member)
    /// until the client's request timeout passes without a working member;
    /// a compacted start revision is [`GcsClientError::Rejected`] with
    /// [`GcsError::Compacted`]: re-list and watch again.
    pub async fn next(&mut self) -> Result<RevisionEvents> {
        let config = self.client.config().clone();
        let mut failing_since: Option<tokio::time::Instant> = None;
        let mut backoff = config.backoff.0;
        let mut failures = 0usize;
        let mut member_changes = self.client.member_changes();
        loop {
            if self.open.is_none() {
                // The known members; after each of them failed once, the
                // seeds too.
                let members = match failures >= self.client.members().len() {
                    false => self.client.members(),
                    true => self.client.members_with_seeds(),
                };
                let addr = members[self.member % members.len()].clone();
                let request = WatchRequest {
                    selector: self.selector.clone(),
                    from_revision: self.next_revision,
                };
                match self
                    .client
                    .rpc()
                    .channel(&addr)
                    .stream::<Watch>(&request)
                    .await
                {
                    Ok(stream) => {
                        // Only changes from now on can move it off.
                        member_changes.borrow_and_update();
                        self.open = Some(stream);
                        self.open_on = addr;
                    }
                    Err(e) if !e.is_retryable() => return Err(GcsClientError::Transport(e)),
                    Err(e) => {
                        failures += 1;
                        self.failed(
                            &mut failing_since,
                            &mut backoff,
                            e.to_string(),
                            config.request_timeout,
                        )
                        .await?;
                        continue;
                    }
                }
            }
            let stream = self.open.as_mut().expect("opened above");
            let open_on = self.open_on.clone();
            let next = tokio::select! {
                next = stream.next() => next,
                () = removed(&mut member_changes, &open_on) => {
                    // Not a failure: move to a listed member at once.
                    self.open = None;
                    self.member += 1;
                    continue;
                }
            };
            let reason = match next {
                Some(Ok(Ok(events))) => {
                    self.next_revision = events.revision + 1;
                    return Ok(events);
                }
                Some(Ok(Err(e))) if !e.is_retryable() => {
                    self.open = None;
                    return Err(GcsClientError::Rejected(e));
                }
                Some(Ok(Err(e))) => e.to_string(),
                Some(Err(e)) => e.to_string(),
                None => "the member ended the watch".into(),
            };
            // Resume from the next undelivered revision elsewhere.
            self.open = None;
            failures += 1;
            self.failed(
                &mut failing_since,
                &mut backoff,
                reason,
                config.request_timeout,
            )
            .await?;
        }
    }

    /// Moves to the next member after a wait; gives up once members have
    /// failed for longer than `give_up_after`.
    async fn failed(
        &mut self,
        since: &mut Option<tokio::time::Instant>,
        backoff: &mut Duration,
        last: String,
        give_up_after: Duration,
    ) -> Result<()> {
        let started = *since.get_or_insert_with(tokio::time::Instant::now);
        if started.elapsed() >= give_up_after {
            return Err(GcsClientError::Unavailable {
                after: give_up_after,
                last,
            });
        }
        self.member += 1;
        tokio::time::sleep(*backoff).await;
        *backoff = (*backoff * 2).min(self.client.config().backoff.1);
        Ok(())
    }
}

/// Resolves once a change of the known member list leaves `addr` out
/// (never, if the client goes away first). Changes seen before the call
/// do not count: a watch opened on a seed outside the list stays there
/// until the membership changes again.
async fn removed(changes: &mut tokio::sync::watch::Receiver<Vec<String>>, addr: &str) {
    loop {
        if changes.changed().await.is_err() {
            return std::future::pending().await;
        }
        if !changes.borrow_and_update().iter().any(|a| a == addr) {
            return;
        }
    }
}
