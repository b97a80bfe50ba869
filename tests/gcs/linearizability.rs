//! The control store's history stays linearizable while its leader is
//! SIGKILLed again and again: concurrent puts, linearizable gets and CAS
//! on a few keys are recorded and checked with a Porcupine-style search.
//! An operation whose answer was lost counts as "may have happened".

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use troupe_chaos::linearizability::{check, CheckResult, KvInput, KvModel, KvOutput, Recorder};
use troupe_gcs::client::GcsClient;
use troupe_gcs::{
    Compare, CompareOp, CompareTarget, Operation, Outcome, PutRequest, TxnOp, TxnRequest,
};

use crate::support::{wait_until, Cluster};

const KEYS: [&str; 3] = ["a", "b", "c"];

/// Runs one operation and returns its observed output (`None`: unknown).
async fn perform(client: &GcsClient, input: &KvInput) -> Option<KvOutput> {
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
        KvInput::Delete { .. } => unreachable!("this workload does not delete"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_stays_linearizable_while_the_leader_is_killed_repeatedly() {
    let mut cluster = Cluster::start(3).await;
    let recorder = Arc::new(Recorder::<KvInput, KvOutput>::new());
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for client_id in 0..4u64 {
        let mut client_config = troupe_gcs::client::ClientConfig::new(
            cluster.members.iter().map(|m| m.addr.clone()).collect(),
        );
        // Bounded operations: a lost answer becomes "unknown", not a hang.
        client_config.request_timeout = Duration::from_secs(3);
        let client = GcsClient::new(cluster.rpc.clone(), client_config).unwrap();
        let (recorder, stop) = (recorder.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut last_seen: Option<Vec<u8>> = None;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let key = KEYS[(rand::random::<u32>() % 3) as usize]
                    .as_bytes()
                    .to_vec();
                let value = format!("{client_id}-{n}").into_bytes();
                let input = match n % 3 {
                    0 => KvInput::put(key, value),
                    1 => KvInput::get(key),
                    _ => KvInput::cas(key, last_seen.as_deref(), value),
                };
                let token = recorder.begin(client_id, input.clone());
                let output = perform(&client, &input).await;
                if let Some(KvOutput::Value(v)) = &output {
                    last_seen = v.clone();
                }
                recorder.end(token, output);
            }
        }));
    }

    let ops = || {
        let recorder = recorder.clone();
        async move { recorder.len() }
    };
    for _round in 0..3 {
        let before = recorder.len();
        wait_until(
            "operations complete between kills",
            Duration::from_secs(30),
            || {
                let o = ops();
                async move { o.await >= before + 100 }
            },
        )
        .await;
        let leader = cluster.leader().await;
        cluster.members[leader].kill();
        let before = recorder.len();
        wait_until(
            "operations complete without the old leader",
            Duration::from_secs(30),
            || {
                let o = ops();
                async move { o.await >= before + 100 }
            },
        )
        .await;
        cluster.members[leader].restart();
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }

    let history = Arc::try_unwrap(recorder).ok().unwrap().into_history();
    let total = history.len();
    let unknown = history
        .operations()
        .iter()
        .filter(|o| o.output.is_none())
        .count();
    match check::<KvModel>(&history).unwrap() {
        CheckResult::Ok => {
            assert!(total >= 600, "only {total} operations recorded");
            eprintln!("linearizable: {total} operations, {unknown} with unknown outcome");
        }
        CheckResult::Illegal { explanation, .. } => {
            panic!("not linearizable ({total} operations):\n{explanation}")
        }
        CheckResult::Unknown { key, steps } => {
            panic!("the checker gave up on key {key:?} after {steps} steps ({total} operations, {unknown} unknown)")
        }
    }
}
