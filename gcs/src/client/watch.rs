//! A watch that survives member failures: it resumes from the revision
//! after the last one delivered, on whichever member answers, so events
//! arrive in revision order, none lost and none repeated.

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
    member: usize,
}

impl WatchStream {
    pub(super) fn new(client: GcsClient, selector: KeySelector, from: u64) -> WatchStream {
        WatchStream {
            client,
            selector,
            next_revision: from,
            open: None,
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
        loop {
            if self.open.is_none() {
                // The client's current list (its start addresses until
                // the refresher learns more; never empty).
                let members = self.client.members();
                let addr = members[self.member % members.len()].clone();
                let request = WatchRequest {
                    selector: self.selector.clone(),
                    from_revision: self.next_revision,
                };
                match self
                    .client
                    .rpc()
                    .channel(&addr)
                    // Fail fast: a dead member is skipped at once (the
                    // next one may serve), not waited for.
                    .stream_with::<Watch>(&request, true)
                    .await
                {
                    Ok(stream) => self.open = Some(stream),
                    Err(e) if !e.is_retryable() => return Err(GcsClientError::Transport(e)),
                    Err(e) => {
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
            let reason = match stream.next().await {
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
