//! The control store's history stays linearizable while its leader is
//! SIGKILLed again and again: concurrent puts, linearizable gets and CAS
//! on a few keys are recorded and checked with a Porcupine-style search.
//! An operation whose answer was lost counts as "may have happened".

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use troupe_chaos::linearizability::{check, CheckResult, KvInput, KvModel, KvOutput, Recorder};
use troupe_chaos::workload::gcs::perform;
use troupe_gcs::client::GcsClient;

use crate::support::{wait_until, Cluster};

const KEYS: [&str; 3] = ["a", "b", "c"];

/// Operations with a known outcome the run must record at least: with
/// fewer, the check proves little (a run where every operation timed out
/// is trivially linearizable).
const MIN_KNOWN: usize = 600;

/// Kill rounds; each has two phases, before the kill and after it.
const ROUNDS: usize = 3;

/// Operations with a known outcome to complete in each phase: together
/// the phases reach [`MIN_KNOWN`].
const KNOWN_PER_PHASE: usize = MIN_KNOWN / (2 * ROUNDS);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_stays_linearizable_while_the_leader_is_killed_repeatedly() {
    let mut cluster = Cluster::start(3).await;
    let recorder = Arc::new(Recorder::<KvInput, KvOutput>::new());
    let stop = Arc::new(AtomicBool::new(false));
    // Operations that ended with a known outcome: progress is counted in
    // these, not in operations begun (an unanswered one proves nothing).
    let known = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for client_id in 0..4u64 {
        let mut client_config = troupe_gcs::client::ClientConfig::new(
            cluster.members.iter().map(|m| m.addr.clone()).collect(),
        );
        // Bounded operations: a lost answer becomes "unknown", not a hang.
        client_config.request_timeout = Duration::from_secs(3);
        let client = GcsClient::new(cluster.rpc.clone(), client_config).unwrap();
        let (recorder, stop, known) = (recorder.clone(), stop.clone(), known.clone());
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
                let is_known = output.is_some();
                recorder.end(token, output);
                if is_known {
                    known.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }

    let known_after = |before: usize| {
        let known = known.clone();
        move || {
            let known = known.clone();
            async move { known.load(Ordering::SeqCst) >= before + KNOWN_PER_PHASE }
        }
    };
    for _round in 0..ROUNDS {
        let before = known.load(Ordering::SeqCst);
        wait_until(
            "operations with a known outcome complete between kills",
            Duration::from_secs(30),
            known_after(before),
        )
        .await;
        let leader = cluster.leader().await;
        cluster.members[leader].kill();
        let before = known.load(Ordering::SeqCst);
        wait_until(
            "operations with a known outcome complete without the old leader",
            Duration::from_secs(30),
            known_after(before),
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
        .filter(|o| o.is_unknown())
        .count();
    let known_ops = total - unknown;
    assert_eq!(
        known_ops,
        known.load(Ordering::SeqCst),
        "the history and the workers count the same known outcomes"
    );
    match check::<KvModel>(&history).unwrap() {
        CheckResult::Ok => {
            assert!(
                known_ops >= MIN_KNOWN,
                "only {known_ops} of {total} operations have a known outcome ({unknown} unknown); \
                 the check needs at least {MIN_KNOWN}"
            );
            eprintln!(
                "linearizable: {total} operations, {known_ops} with known outcome, {unknown} unknown"
            );
        }
        CheckResult::Illegal { explanation, .. } => {
            panic!("not linearizable ({total} operations, {unknown} unknown):\n{explanation}")
        }
        CheckResult::Unknown { key, steps } => {
            panic!("the checker gave up on key {key:?} after {steps} steps ({total} operations, {unknown} unknown)")
        }
    }
}
