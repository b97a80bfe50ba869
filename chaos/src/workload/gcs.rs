//! GCS operations for the linearizability and lost-write checks: each
//! client puts, reads (linearizable) and compare-and-swaps a few shared
//! keys under `/chaos/`, one operation at a time at its share of the rate,
//! every operation recorded with its call and return times. A lost answer
//! is recorded as an unknown outcome (it may or may not have happened).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use troupe_core::rpc::RpcClient;
use troupe_gcs::client::{ClientConfig, GcsClient};
use troupe_gcs::{
    Compare, CompareOp, CompareTarget, Operation, Outcome, PutRequest, TxnOp, TxnRequest,
};

use crate::linearizability::{KvInput, KvOutput, Recorder};
use crate::scenario::GcsWorkload;

/// The shared keys.
pub fn keys(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|k| format!("/chaos/k{k}").into_bytes())
        .collect()
}

/// A client of the cluster's GCS with the workload's timeout.
pub fn client(
    rpc: &RpcClient,
    members: Vec<String>,
    timeout: Duration,
) -> anyhow::Result<GcsClient> {
    let mut config = ClientConfig::new(members);
    config.request_timeout = timeout;
    config.attempt_timeout = timeout.min(Duration::from_secs(1));
    Ok(GcsClient::new(rpc.clone(), config)?)
}

/// Runs one operation; `None` when its outcome is unknown.
pub async fn perform(client: &GcsClient, input: &KvInput) -> Option<KvOutput> {
    match input {
        KvInput::Put { key, value } => client
            .put(key.clone(), value.clone())
            .await
            .ok()
            .filter(|r| r.outcome.is_ok())
            .map(|_| KvOutput::Ok),
        KvInput::Get { key } => client
            .get(key.clone())
            .await
            .ok()
            .map(|kv| KvOutput::Value(kv.map(|kv| kv.value))),
        KvInput::Cas { key, expected, new } => {
            let compare = match expected {
                Some(v) => Compare {
                    key: key.clone(),
                    op: CompareOp::Equal,
                    target: CompareTarget::Value(v.clone()),
                },
                None => Compare::absent(key.clone()),
            };
            let txn = TxnRequest {
                compares: vec![compare],
                success: vec![TxnOp::Put(PutRequest::new(key.clone(), new.clone()))],
                failure: vec![],
            };
            match client.write(Operation::Txn(txn)).await.ok()?.outcome {
                Ok(Outcome::Txn(t)) => Some(KvOutput::Swapped(t.succeeded)),
                _ => None,
            }
        }
        KvInput::Delete { key } => client
            .delete(key.clone())
            .await
            .ok()
            .filter(|r| r.outcome.is_ok())
            .map(|_| KvOutput::Ok),
    }
}

/// Runs `workload`'s clients until `stop` turns true, recording into
/// `recorder`.
pub async fn run(
    workload: GcsWorkload,
    rpc: RpcClient,
    members: Vec<String>,
    stop: watch::Receiver<bool>,
    recorder: Arc<Recorder<KvInput, KvOutput>>,
    seed: u64,
) -> anyhow::Result<()> {
    let keys = keys(workload.keys);
    let per_client = Duration::from_secs_f64(workload.clients as f64 / workload.rate);
    let timeout = Duration::from_secs_f64(workload.timeout_s);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..workload.clients as u64 {
        let client = client(&rpc, members.clone(), timeout)?;
        let (keys, stop, recorder) = (keys.clone(), stop.clone(), recorder.clone());
        tasks.spawn(async move {
            let mut n = 0u64;
            let mut last_seen: Option<Vec<u8>> = None;
            let mut next = Instant::now();
            // A per-client sequence from the seed: which key, which operation.
            let mut x = seed ^ (c.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
            while !*stop.borrow() {
                n += 1;
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let key = keys[(x % keys.len() as u64) as usize].clone();
                let value = format!("c{c}-{n}").into_bytes();
                let input = match n % 3 {
                    0 => KvInput::put(key, value),
                    1 => KvInput::get(key),
                    _ => KvInput::cas(key, last_seen.as_deref(), value),
                };
                let token = recorder.begin(c, input.clone());
                let output = perform(&client, &input).await;
                if let Some(KvOutput::Value(v)) = &output {
                    last_seen = v.clone();
                }
                recorder.end(token, output);
                next += per_client;
                let mut stop = stop.clone();
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => {}
                    _ = stop.changed() => {}
                }
                if next < Instant::now() {
                    next = Instant::now();
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// After the run: one linearizable read of every key, retried until its
/// outcome is known or `within` has passed, recorded like the others (the
/// lost-write check reads them as the final values).
pub async fn final_reads(
    workload: &GcsWorkload,
    rpc: &RpcClient,
    members: Vec<String>,
    recorder: &Recorder<KvInput, KvOutput>,
    within: Duration,
) -> anyhow::Result<usize> {
    let client = client(rpc, members, Duration::from_secs_f64(workload.timeout_s))?;
    let deadline = Instant::now() + within;
    let mut known = 0;
    for key in keys(workload.keys) {
        loop {
            let input = KvInput::get(key.clone());
            let token = recorder.begin(u64::MAX, input.clone());
            let output = perform(&client, &input).await;
            let done = output.is_some();
            recorder.end(token, output);
            if done {
                known += 1;
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
        }
    }
    Ok(known)
}
