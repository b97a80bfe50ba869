//! Scale tests: thousands of operations per key, from real threads and from
//! the simulator. They assert verdicts, not times; run with `--nocapture`
//! to see how long each check took.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::simulation::{corrupt_read, execute, random_plans};
use super::*;

const CLIENTS: u64 = 5;
const OPS_PER_CLIENT: usize = 2_000;
const KEYS: u8 = 3;

/// Five threads run 2,000 operations each on three keys of a locked map,
/// recording with a [`Recorder`]; one operation in 100 times out (applied
/// or not). The store is linearizable, so the history must be.
#[test]
fn threads_on_a_locked_map_are_linearizable() {
    let store: Mutex<HashMap<Vec<u8>, Vec<u8>>> = Mutex::new(HashMap::new());
    let recorder = Recorder::new();
    std::thread::scope(|scope| {
        for client in 0..CLIENTS {
            let (store, recorder) = (&store, &recorder);
            scope.spawn(move || {
                let mut rng = StdRng::seed_from_u64(client);
                for _ in 0..OPS_PER_CLIENT {
                    let key = format!("k{}", rng.random_range(0..KEYS)).into_bytes();
                    let value = format!("v{}", rng.random_range(0..4)).into_bytes();
                    let input = match rng.random_range(0..10) {
                        0..4 => KvInput::Get { key },
                        4..7 => KvInput::Put { key, value },
                        7 => KvInput::Delete { key },
                        _ => KvInput::Cas {
                            key,
                            expected: rng
                                .random_bool(0.7)
                                .then(|| format!("v{}", rng.random_range(0..4)).into_bytes()),
                            new: value,
                        },
                    };
                    let timed_out = rng.random_range(0..100) == 0;
                    let token = recorder.begin(client, input.clone());
                    let output = if timed_out && rng.random() {
                        None
                    } else {
                        let output = apply(&mut store.lock().unwrap(), &input);
                        (!timed_out).then_some(output)
                    };
                    recorder.end(token, output);
                }
            });
        }
    });
    let mut history = recorder.into_history();
    assert_eq!(history.len(), CLIENTS as usize * OPS_PER_CLIENT);
    let started = Instant::now();
    let result = check::<KvModel>(&history).unwrap();
    eprintln!(
        "threads: checked {} ops in {:?}",
        history.len(),
        started.elapsed()
    );
    assert_eq!(result, CheckResult::Ok);

    // An early read: proving illegality backtracks over everything before it.
    let index = corrupt_read(&mut history, 200).expect("reads exist");
    let started = Instant::now();
    let result = check::<KvModel>(&history).unwrap();
    eprintln!("threads, corrupted: checked in {:?}", started.elapsed());
    assert!(result.is_illegal(), "{result:?}");
    let CheckResult::Illegal { key, .. } = result else {
        unreachable!()
    };
    assert_eq!(key, history.operations()[index].input.key());
}

/// The simulator with wide overlapping intervals: each operation may span
/// several other clients' operations.
#[test]
fn wide_simulated_execution_is_linearizable_and_a_corruption_is_found() {
    let mut rng = StdRng::seed_from_u64(7);
    let plans = random_plans(
        &mut rng,
        CLIENTS as usize * OPS_PER_CLIENT,
        CLIENTS,
        KEYS,
        100,
    );
    let mut history = execute(&plans);
    let started = Instant::now();
    let result = check::<KvModel>(&history).unwrap();
    eprintln!(
        "simulated: checked {} ops in {:?}",
        history.len(),
        started.elapsed()
    );
    assert_eq!(result, CheckResult::Ok);

    let middle = history.len() / 2;
    let index = corrupt_read(&mut history, middle).expect("reads exist");
    let started = Instant::now();
    let result = check::<KvModel>(&history).unwrap();
    eprintln!(
        "corrupted: checked {} ops in {:?}",
        history.len(),
        started.elapsed()
    );
    match result {
        CheckResult::Illegal { key, explanation } => {
            assert_eq!(key, history.operations()[index].input.key());
            eprintln!("{explanation}");
        }
        other => panic!("expected Illegal, got {other:?}"),
    }
}

fn apply(map: &mut HashMap<Vec<u8>, Vec<u8>>, input: &KvInput) -> KvOutput {
    match input {
        KvInput::Get { key } => KvOutput::Value(map.get(key).cloned()),
        KvInput::Put { key, value } => {
            map.insert(key.clone(), value.clone());
            KvOutput::Ok
        }
        KvInput::Delete { key } => {
            map.remove(key);
            KvOutput::Ok
        }
        KvInput::Cas { key, expected, new } => {
            let swapped = map.get(key) == expected.as_ref();
            if swapped {
                map.insert(key.clone(), new.clone());
            }
            KvOutput::Swapped(swapped)
        }
    }
}
