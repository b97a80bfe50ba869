//! Calls to named actors that restart: the actor API under faults. The
//! workload spawns `actors` detached actors of [`Tally`] (a counter every
//! binary built on `troupe::cli::run` hosts) with the scenario's
//! `max_restarts`, then calls them open loop, round robin, each call
//! recorded like an HTTP request (latency from its due time, no retry
//! beyond the actor's own `max_task_retries`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;
use troupe_core::rpc::ClusterToken;
use troupe_worker::{
    Actor, ActorContext, ActorError, ActorHandle, ActorType, Cluster, Handler, Message,
};

use crate::record::{HttpRecord, Outcome};
use crate::report::BALANCED_PROXY;
use crate::scenario::ActorWorkload;

/// A counter: the actor the harness calls.
pub struct Tally {
    count: u64,
}

impl Actor for Tally {
    const TYPE_NAME: &'static str = "troupe.chaos.Tally";
    type Args = u64;

    async fn start(start: u64, _: &ActorContext) -> Result<Self, String> {
        Ok(Tally { count: start })
    }
}

/// Adds one; replies with the count (since the instance started).
#[derive(Debug, Serialize, Deserialize)]
pub struct Bump;

impl Message for Bump {
    type Reply = u64;
    const NAME: &'static str = "troupe.chaos.Tally.Bump";
}

impl Handler<Bump> for Tally {
    async fn handle(&mut self, _: Bump, _: &ActorContext) -> u64 {
        self.count += 1;
        self.count
    }
}

/// [`Tally`]'s registration, which `troupe::cli::run` adds to every
/// binary's registry.
pub fn actor_type() -> ActorType<Tally> {
    ActorType::<Tally>::new().handles::<Bump>()
}

/// How a failed call is recorded.
pub fn outcome_of(error: &ActorError) -> Outcome {
    match error {
        ActorError::Unavailable { .. } => Outcome::Unavailable,
        ActorError::Pending { .. } => Outcome::Pending,
        ActorError::Died { .. } => Outcome::Died,
        _ => Outcome::Error,
    }
}

/// A driver and the workload's actors, spawned through the first node of
/// `entry` that answers.
pub async fn prepare(
    workload: &ActorWorkload,
    entry: &[String],
    token: &str,
) -> anyhow::Result<(Cluster, Vec<ActorHandle<Tally>>)> {
    let token = ClusterToken::new(token)?;
    let mut last = None;
    let mut driver = None;
    for addr in entry {
        match Cluster::connect(addr, token.clone()).await {
            Ok(c) => {
                driver = Some(c);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let driver = driver.with_context(|| format!("connecting a driver: {last:?}"))?;
    let mut handles = Vec::new();
    for k in 0..workload.actors {
        let handle = driver
            .spawn::<Tally>(0)
            .name(format!("chaos-{}-{k}", workload.name))
            .num_cpus(0.01)
            .max_restarts(workload.max_restarts)
            .max_task_retries(workload.max_task_retries)
            .detached()
            .await
            .with_context(|| format!("spawning actor {k} of workload {}", workload.name))?;
        handles.push(handle);
    }
    Ok((driver, handles))
}

/// Calls the actors from `start` until `stop` turns true; every call's
/// record goes to `out`.
pub async fn run(
    workload: ActorWorkload,
    handles: Vec<ActorHandle<Tally>>,
    origin: Instant,
    start: Instant,
    stop: watch::Receiver<bool>,
    out: Arc<Mutex<Vec<HttpRecord>>>,
) {
    let interval = Duration::from_secs_f64(1.0 / workload.rate);
    let timeout = Duration::from_secs_f64(workload.timeout_s);
    let handles = Arc::new(handles);
    let name: Arc<str> = workload.name.clone().into();
    let mut tasks = tokio::task::JoinSet::new();
    let mut k: u32 = 0;
    while !*stop.borrow() && !handles.is_empty() {
        let due = start + interval * k;
        tokio::time::sleep_until(due).await;
        if *stop.borrow() {
            break;
        }
        let (handles, out, name) = (handles.clone(), out.clone(), name.clone());
        let which = k as usize % handles.len();
        k += 1;
        tasks.spawn(async move {
            let outcome = match tokio::time::timeout_at(
                due + timeout,
                handles[which].call_timeout(Bump, timeout),
            )
            .await
            {
                Err(_) => Outcome::Timeout,
                Ok(Ok(_)) => Outcome::Ok,
                Ok(Err(e)) => outcome_of(&e),
            };
            let record = HttpRecord {
                workload: name.to_string(),
                sent_ms: due.saturating_duration_since(origin).as_millis() as u64,
                latency_us: due.elapsed().as_micros() as u64,
                // One gap over the workload, as for a load balancer.
                proxy: Some(BALANCED_PROXY),
                outcome,
            };
            out.lock().unwrap_or_else(|p| p.into_inner()).push(record);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}
