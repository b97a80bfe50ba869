//! The GCS client: finds the leader, follows its hints, retries what is
//! safe to retry within a deadline, and makes writes exactly-once.
//!
//! Every write carries a session `(client_id, seq)`. A write that may have
//! been applied but whose answer was lost (a leader died, a connection
//! dropped) is retried with the same session, possibly on a new leader; the
//! state machine answers a retry from its session table instead of applying
//! it twice. The table keeps only the last sequence number per client id,
//! so a client runs at most one write per session at a time and keeps a
//! pool of sessions for concurrent writes.
//!
//! The member list is kept current in the background (`members.rs`): a
//! task asks the leader the client last reached for the membership every
//! [`ClientConfig::membership_refresh`], and at once when requests find a
//! new leader; members added later are then tried too, and removed ones
//! dropped once a leader that heard a quorum says so. Requests and watches
//! only read the list: none ever waits for a refresh, and a refresh never
//! touches the leader a request will try.
//!
//! Errors separate what a caller can act on: [`GcsClientError::Unavailable`]
//! (no member answered in time: try later), [`GcsClientError::Rejected`]
//! (the store refused the request: retrying will not help), and
//! [`GcsClientError::Transport`] (this process cannot talk to the cluster
//! at all: wrong token or version).

mod members;
mod watch;

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::time::Instant;
use tracing::debug;
use troupe_core::rpc::{CallOptions, RpcClient, RpcError};

use crate::api::{Admin, AdminReply, AdminRequest, GcsError, Kv, KvReply, KvRequest, MemberStatus};
use crate::command::{Command, KeySelector, Operation, RangeRequest};
use crate::model::{KeyValue, LeaseId};
use crate::response::{CommandError, Outcome, Response};
use crate::store::RangeRead;
use members::MemberList;

pub use watch::WatchStream;

/// How a client talks to the cluster.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Addresses of some or all members; the leader is found from there,
    /// and the current membership learned from the leader.
    pub members: Vec<String>,
    /// How long one request may take, retries and failovers included.
    pub request_timeout: Duration,
    /// How long one attempt on one member may take before the next member
    /// is tried (a partitioned old leader never answers).
    pub attempt_timeout: Duration,
    /// Waits between rounds over all members: doubling from the first to
    /// the second.
    pub backoff: (Duration, Duration),
    /// A request fails early, with [`GcsClientError::Unavailable`], once
    /// no member has known a leader for this long (every member tried):
    /// the store has lost its quorum, and waiting out `request_timeout`
    /// would only make control operations hang. Much longer than an
    /// election (150–300 ms).
    pub no_leader_grace: Duration,
    /// How often a client in use asks the leader for the membership (it
    /// also asks whenever its requests find a new leader). In the
    /// background: no request waits for it.
    pub membership_refresh: Duration,
}

impl ClientConfig {
    pub fn new(members: Vec<String>) -> ClientConfig {
        ClientConfig {
            members,
            request_timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(2),
            // Short: during a failover members answer at once (NotLeader or
            // refused), and the new leader is usually there within ~0.5 s.
            backoff: (Duration::from_millis(10), Duration::from_millis(100)),
            no_leader_grace: Duration::from_secs(2),
            membership_refresh: Duration::from_secs(5),
        }
    }
}

/// Tracks, within one request, how long no member has known a leader.
#[derive(Debug, Default)]
pub(crate) struct Leaderless {
    since: Option<Instant>,
    /// Attempts since then.
    attempts: usize,
}

impl Leaderless {
    /// Takes a failed attempt's outcome; true once no member has known a
    /// leader for `grace` and every member was asked meanwhile.
    pub(crate) fn gave_up(
        &mut self,
        outcome: &Attempt,
        now: Instant,
        members: usize,
        grace: Duration,
    ) -> bool {
        let knows_leader = matches!(
            outcome,
            Attempt::Store(GcsError::NotLeader {
                leader: Some(_),
                ..
            })
        );
        if knows_leader {
            *self = Leaderless::default();
            return false;
        }
        let since = *self.since.get_or_insert(now);
        self.attempts += 1;
        self.attempts >= members && now.saturating_duration_since(since) >= grace
    }
}

/// Why a GCS request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GcsClientError {
    /// No member completed the request before the deadline. A write may
    /// still have been applied (its session makes a later retry safe).
    #[error("the control store did not answer within {after:?} (last error: {last}); check that a majority of GCS members is running")]
    Unavailable { after: Duration, last: String },
    /// The store refused the request; retrying it unchanged will not help.
    #[error("the control store refused the request: {0}")]
    Rejected(GcsError),
    /// This process cannot talk to the cluster (token, version, size).
    #[error(transparent)]
    Transport(RpcError),
    /// The client was configured without member addresses.
    #[error("no GCS member addresses given; pass at least one with --gcs or in the config")]
    NoMembers,
}

pub type Result<T, E = GcsClientError> = std::result::Result<T, E>;

/// One exactly-once session: a client id and its next sequence number.
#[derive(Debug)]
struct Session {
    client_id: u64,
    next_seq: u64,
    /// The store answered a write of this session: it holds the session
    /// (until it expires). A session whose first write got no answer may
    /// be unknown to the store, where its next sequence number would be
    /// refused as expired: it is dropped instead of reused.
    opened: bool,
}

impl Session {
    /// A new session: a random id (64 bits: no two clients pick the same),
    /// starting at sequence 1, which opens it in the store.
    fn fresh() -> Session {
        Session {
            client_id: rand::random::<u64>() | 1,
            next_seq: 1,
            opened: false,
        }
    }
}

struct Inner {
    rpc: RpcClient,
    config: ClientConfig,
    /// The member believed to lead, tried first.
    leader: Mutex<Option<String>>,
    /// Sessions not in use by a write now.
    idle_sessions: Mutex<Vec<Session>>,
    /// The addresses tried (`members.rs`); held only to copy or update.
    members: Mutex<MemberList>,
    /// Wakes the refresher (a request found a new leader).
    refresh_now: Arc<tokio::sync::Notify>,
    /// The refresher's task, started on first use (`new` may run outside
    /// a runtime) and again by the next request after it ended, as it does
    /// with the runtime it was spawned on (a client made in one runtime
    /// and used from another keeps refreshing).
    refresher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A handle on the control store. Cheap to clone.
#[derive(Clone)]
pub struct GcsClient {
    inner: Arc<Inner>,
}

/// Where an attempt should go next, decided from an error: a pure rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Next {
    /// Retry at once at this address (the leader's, from a hint).
    Redirect(String),
    /// Try the next member.
    TryAnother,
    /// Give up with this error.
    Fail(GcsClientError),
}

/// Decides what to do after an attempt failed.
pub(crate) fn after_error(error: &Attempt) -> Next {
    match error {
        Attempt::Store(GcsError::NotLeader {
            leader: Some((_, addr)),
            ..
        }) => Next::Redirect(addr.clone()),
        Attempt::Store(e) if e.is_retryable() => Next::TryAnother,
        Attempt::Store(e) => Next::Fail(GcsClientError::Rejected(e.clone())),
        Attempt::Rpc(e) if e.is_retryable() => Next::TryAnother,
        Attempt::Rpc(e) => Next::Fail(GcsClientError::Transport(e.clone())),
    }
}

/// Whether a failed attempt may have reached a leader that applied it:
/// only a refused connection and a "not the leader" answer prove it did
/// not. Pure.
pub(crate) fn may_have_applied(attempt: &Attempt) -> bool {
    !matches!(
        attempt,
        Attempt::Store(GcsError::NotLeader { .. }) | Attempt::Rpc(RpcError::Connect { .. })
    )
}

/// How one attempt failed.
#[derive(Debug, Clone)]
pub(crate) enum Attempt {
    Store(GcsError),
    Rpc(RpcError),
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Attempt::Store(e) => e.fmt(f),
            Attempt::Rpc(e) => e.fmt(f),
        }
    }
}

impl GcsClient {
    pub fn new(rpc: RpcClient, config: ClientConfig) -> Result<GcsClient> {
        if config.members.is_empty() {
            return Err(GcsClientError::NoMembers);
        }
        Ok(GcsClient {
            inner: Arc::new(Inner {
                rpc,
                leader: Mutex::new(None),
                idle_sessions: Mutex::new(Vec::new()),
                members: Mutex::new(MemberList::new(config.members.clone())),
                config,
                refresh_now: Arc::default(),
                refresher: Mutex::new(None),
            }),
        })
    }

    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The member addresses this client tries now: those it started with,
    /// then those learned from the leader, less those the leader said were
    /// removed.
    pub fn members(&self) -> Vec<String> {
        Self::lock(&self.inner.members).addrs().to_vec()
    }

    /// Asks the leader this client last reached for the membership, once,
    /// and takes a believed answer into the member list. Does nothing
    /// without a known leader (requests find one) or when it does not
    /// answer within the attempt timeout. True if the list changed.
    pub async fn refresh_members(&self) -> bool {
        let Some(leader) = self.leader_hint() else {
            return false;
        };
        let options = CallOptions {
            timeout: Some(self.inner.config.attempt_timeout),
            fail_fast: true,
        };
        let answer = self
            .inner
            .rpc
            .channel(&leader)
            .call_with::<Admin>(&AdminRequest::Status, options)
            .await;
        let Ok(Ok(AdminReply::Status(status))) = answer else {
            return false;
        };
        let mut list = Self::lock(&self.inner.members);
        let changed = list.learn(&status);
        if changed {
            debug!(members = ?list.addrs(), "GCS membership learned");
        }
        changed
    }

    /// Starts the task that refreshes the member list every
    /// `membership_refresh` and whenever woken, unless it runs: it lasts
    /// while the client exists and its runtime runs. One refresh at a
    /// time; a refresh is one bounded call.
    fn start_refresher(&self) {
        let mut task = Self::lock(&self.inner.refresher);
        if task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        // Only a weak handle between refreshes: the task ends within one
        // period of the last clone of the client being dropped.
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let wake = self.inner.refresh_now.clone();
        let every = self.inner.config.membership_refresh;
        *task = Some(tokio::spawn(async move {
            loop {
                let _ = tokio::time::timeout(every, wake.notified()).await;
                let Some(inner) = weak.upgrade() else { return };
                GcsClient { inner }.refresh_members().await;
            }
        }));
    }

    /// Whether the member-list refresher runs now.
    #[cfg(test)]
    fn refresher_running(&self) -> bool {
        Self::lock(&self.inner.refresher)
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    /// The member believed to lead, if any.
    pub fn leader_hint(&self) -> Option<String> {
        Self::lock(&self.inner.leader).clone()
    }

    /// Sends `request` to the leader (found by hints and by trying members
    /// in turn), retrying what is safe until the request deadline.
    async fn to_leader<P, T>(&self, request: &P::Request) -> Result<T>
    where
        P: troupe_core::rpc::Protocol<Response = std::result::Result<T, GcsError>>,
    {
        Ok(self.to_leader_traced::<P, T>(request).await?.0)
    }

    /// [`Self::to_leader`], also saying whether an attempt before the one
    /// answered may have reached a leader (see [`may_have_applied`]) long
    /// enough ago that its session may have expired since.
    async fn to_leader_traced<P, T>(&self, request: &P::Request) -> Result<(T, bool)>
    where
        P: troupe_core::rpc::Protocol<Response = std::result::Result<T, GcsError>>,
    {
        let mut uncertain = false;
        self.start_refresher();
        let config = &self.inner.config;
        let started = Instant::now();
        let deadline = started + config.request_timeout;
        let mut members = self.members();
        let believed_leader = self.leader_hint();
        let mut target = self.leader_hint().unwrap_or_else(|| members[0].clone());
        let mut next_member = members
            .iter()
            .position(|m| *m == target)
            .map_or(0, |i| i + 1);
        let mut tried_this_round = 0usize;
        let mut backoff = config.backoff.0;
        let mut last = String::from("no attempt made");
        let mut leaderless = Leaderless::default();
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(GcsClientError::Unavailable {
                    after: config.request_timeout,
                    last,
                });
            }
            let options = CallOptions {
                timeout: Some(config.attempt_timeout.min(deadline - now)),
                fail_fast: true,
            };
            let outcome = match self
                .inner
                .rpc
                .channel(&target)
                .call_with::<P>(request, options)
                .await
            {
                Ok(Ok(answer)) => {
                    // An attempt applied earlier stamped its session then:
                    // the store cannot have expired it within less than
                    // the shortest retention it accepts.
                    let uncertain =
                        uncertain && started.elapsed() >= crate::kv::MIN_SESSION_RETENTION;
                    if believed_leader.as_ref() != Some(&target) {
                        // A new leader (or the first found): the
                        // membership may have changed with it. Never
                        // waited for.
                        self.inner.refresh_now.notify_one();
                    }
                    *Self::lock(&self.inner.leader) = Some(target);
                    return Ok((answer, uncertain));
                }
                Ok(Err(e)) => Attempt::Store(e),
                Err(e) => Attempt::Rpc(e),
            };
            uncertain |= may_have_applied(&outcome);
            last = format!("{target}: {outcome}");
            debug!(%last, "GCS attempt failed");
            let now = Instant::now();
            if leaderless.gave_up(&outcome, now, members.len(), config.no_leader_grace)
                && !matches!(after_error(&outcome), Next::Fail(_))
            {
                let since = leaderless.since.unwrap_or(now);
                return Err(GcsClientError::Unavailable {
                    after: now.saturating_duration_since(started),
                    last: format!(
                        "no member has known a leader for {:?}, so the store cannot commit (quorum \
                         lost); last: {last}",
                        now.saturating_duration_since(since)
                    ),
                });
            }
            match after_error(&outcome) {
                Next::Fail(e) => return Err(e),
                Next::Redirect(addr) if addr != target => {
                    *Self::lock(&self.inner.leader) = Some(addr.clone());
                    target = addr;
                    continue;
                }
                Next::Redirect(_) | Next::TryAnother => {
                    *Self::lock(&self.inner.leader) = None;
                    tried_this_round += 1;
                    if tried_this_round >= members.len() {
                        // Every member failed once: wait before the next
                        // round, over what the refresher knows by then.
                        tried_this_round = 0;
                        members = self.members();
                        let wake = (Instant::now() + backoff).min(deadline);
                        tokio::time::sleep_until(wake).await;
                        backoff = (backoff * 2).min(config.backoff.1);
                    }
                    target = members[next_member % members.len()].clone();
                    next_member += 1;
                }
            }
        }
    }

    fn take_session(&self) -> Session {
        Self::lock(&self.inner.idle_sessions)
            .pop()
            .unwrap_or_else(Session::fresh)
    }

    /// Puts `session` back for the next write, its sequence number spent;
    /// `answered`: the store answered this write. A session the store may
    /// not know (no write of it was ever answered) is dropped.
    fn return_session(&self, mut session: Session, answered: bool) {
        session.opened |= answered;
        if !session.opened {
            return;
        }
        session.next_seq += 1;
        Self::lock(&self.inner.idle_sessions).push(session);
    }

    /// Replicates `op` exactly once and returns the store's response (which
    /// may be a replicated rejection, e.g. an unknown lease).
    ///
    /// A session idle for longer than the GCS's session retention has been
    /// removed there: the store answers [`CommandError::SessionExpired`]
    /// without applying anything. The write is then sent again under a new
    /// session, unless an earlier attempt of it may have been applied and
    /// the session expired since (possible only when this request took
    /// longer than the shortest retention, 30 s): then that answer is
    /// returned, and the caller must look whether the write applied.
    pub async fn write(&self, op: Operation) -> Result<Response> {
        let session = self.take_session();
        let command = Command::with_session(session.client_id, session.next_seq, op);
        // Refused here as the leader would refuse it, without sending it.
        if let Err(refusal) = crate::kv::check_write(&command) {
            // Never sent: the sequence number is still free.
            Self::lock(&self.inner.idle_sessions).push(session);
            return Ok(Response {
                revision: 0,
                outcome: Err(refusal),
            });
        }
        let result = self
            .to_leader_traced::<Kv, _>(&KvRequest::Write(command.clone()))
            .await;
        let (response, uncertain) = match result {
            Ok((KvReply::Written(response), uncertain)) => (response, uncertain),
            Ok((other, _)) => {
                self.return_session(session, false);
                return Err(unexpected(other));
            }
            Err(e) => {
                // This sequence number is spent: a later write uses the
                // next one, which the store orders after it.
                self.return_session(session, false);
                return Err(e);
            }
        };
        if !matches!(response.outcome, Err(CommandError::SessionExpired { .. })) {
            self.return_session(session, true);
            return Ok(response);
        }
        // The session is gone from the store: never use it again.
        debug!(client_id = session.client_id, "GCS session expired");
        if uncertain {
            return Ok(response);
        }
        let fresh = Session::fresh();
        let again = Command::with_session(fresh.client_id, fresh.next_seq, command.op);
        let result = self.to_leader::<Kv, _>(&KvRequest::Write(again)).await;
        self.return_session(fresh, matches!(result, Ok(KvReply::Written(_))));
        match result? {
            KvReply::Written(response) => Ok(response),
            other => Err(unexpected(other)),
        }
    }

    /// Sets `key` to `value`.
    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<Response> {
        self.write(Operation::put(key, value)).await
    }

    /// Deletes `key`.
    pub async fn delete(&self, key: impl Into<Vec<u8>>) -> Result<Response> {
        self.write(Operation::delete(key)).await
    }

    /// Reads keys. Linearizable reads see every write acknowledged before
    /// they started; serializable ones are answered by any member and may
    /// lag.
    ///
    /// A read larger than one answer ([`RANGE_PAGE_BYTES`](crate::RANGE_PAGE_BYTES)) is read page by
    /// page, each continuing after the last key of the one before, so any
    /// prefix the store holds can be read whatever its size. Each page is
    /// read at its own revision: the result is not one snapshot, and its
    /// `revision` is the first page's, so a watch from `revision + 1` sees
    /// every change made while the pages were read. `more` is set only
    /// when `request.limit` cut the read short.
    pub async fn range(&self, request: RangeRequest, linearizable: bool) -> Result<RangeRead> {
        let mut read = self.range_page(request.clone(), linearizable).await?;
        let mut next = next_page(&request, &read);
        while let Some(page_request) = next {
            let page = self.range_page(page_request.clone(), linearizable).await?;
            next = next_page(&page_request, &page);
            read.kvs.extend(page.kvs);
            read.more = page.more;
        }
        Ok(read)
    }

    /// One answer of a range read (`more` when it was cut short).
    async fn range_page(&self, request: RangeRequest, linearizable: bool) -> Result<RangeRead> {
        let request = KvRequest::Range {
            request,
            linearizable,
        };
        match self.to_leader::<Kv, _>(&request).await? {
            KvReply::Range(read) => Ok(read),
            other => Err(unexpected(other)),
        }
    }

    /// Reads one key, linearizably.
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<Option<KeyValue>> {
        let read = self.range(RangeRequest::key(key), true).await?;
        Ok(read.kvs.into_iter().next())
    }

    /// Grants a lease with `ttl`; keys put with it vanish when it expires.
    pub async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        let id = LeaseId(rand::random::<u64>() | 1);
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let response = self.write(Operation::LeaseGrant { id, ttl_ms }).await?;
        match response.outcome {
            Ok(Outcome::LeaseGranted { id, .. }) => Ok(id),
            Ok(other) => Err(unexpected(other)),
            Err(e) => Err(GcsClientError::Rejected(GcsError::Invalid(e.to_string()))),
        }
    }

    /// Extends a lease by its TTL; returns the TTL.
    pub async fn keep_alive(&self, id: LeaseId) -> Result<Duration> {
        match self.to_leader::<Kv, _>(&KvRequest::KeepAlive(id)).await? {
            KvReply::KeptAlive { ttl_ms } => Ok(Duration::from_millis(ttl_ms)),
            other => Err(unexpected(other)),
        }
    }

    /// Revokes a lease and deletes its keys.
    pub async fn revoke_lease(&self, id: LeaseId) -> Result<Response> {
        self.write(Operation::LeaseRevoke { id }).await
    }

    /// Watches keys under `selector` from `from_revision` (0: from now),
    /// resuming on another member if the one serving it fails.
    pub async fn watch(&self, selector: KeySelector, from_revision: u64) -> Result<WatchStream> {
        let from = match from_revision {
            0 => {
                let now = self
                    .range(
                        RangeRequest {
                            selector: selector.clone(),
                            limit: Some(1),
                        },
                        true,
                    )
                    .await?;
                now.revision + 1
            }
            r => r,
        };
        Ok(WatchStream::new(self.clone(), selector, from))
    }

    /// A membership change or status request, sent to the leader.
    pub async fn admin(&self, request: AdminRequest) -> Result<AdminReply> {
        self.to_leader::<Admin, _>(&request).await
    }

    /// The leader's view of the cluster.
    pub async fn status(&self) -> Result<MemberStatus> {
        match self.admin(AdminRequest::Status).await? {
            AdminReply::Status(status) => Ok(status),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) fn rpc(&self) -> &RpcClient {
        &self.inner.rpc
    }

    pub(crate) fn config(&self) -> &ClientConfig {
        &self.inner.config
    }
}

/// The request for the page after `page`, the answer to `request`;
/// `None` when the read is complete (or its limit reached). Pure.
pub(crate) fn next_page(request: &RangeRequest, page: &RangeRead) -> Option<RangeRequest> {
    if !page.more {
        return None;
    }
    request.after(&page.kvs.last()?.key, page.kvs.len() as u64)
}

fn unexpected(what: impl std::fmt::Debug) -> GcsClientError {
    GcsClientError::Rejected(GcsError::Invalid(format!(
        "the member answered with the wrong kind of reply ({what:?}); are all nodes running the same Troupe version?"
    )))
}

#[cfg(test)]
mod tests;
