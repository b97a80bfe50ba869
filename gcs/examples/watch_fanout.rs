//! GCS watch fan-out: what one applied write costs a member holding N idle
//! watchers, none of which the write matches: single-key watchers, or with
//! `prefix` prefix watchers (a node's narrow view watches its own
//! assignments' prefix, so a member holds one distinct prefix per node).
//!
//! ```text
//! cargo run -p troupe-gcs --release --example watch_fanout [prefix]
//! ```
//!
//! One in-process store, a single-threaded runtime. For each N: N watchers
//! on keys `watched/<i>` (or prefixes `watched/<i>/`), each driven by its own task (as a member's watch
//! service drives one per stream) that counts how often it is polled; then
//! W writes to `unwatched/<j>`, one `apply` each, yielding after each until
//! every woken task has run. Prints the wall time per
//! write (single thread: the runtime's CPU) and the watcher polls per write,
//! and the time per write as a ratio to N = 0 in the same run. Only counts
//! are checked (every write applied, no watcher event delivered), never
//! times.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::future::poll_fn;
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, LogId};
use troupe_gcs::types::Entry;
use troupe_gcs::{open, Command, KeySelector, Operation, PutRequest, StoreConfig};

/// Writes per N.
const WRITES: u64 = 2_000;
/// The watcher counts measured.
const WATCHERS: [usize; 3] = [0, 1_000, 10_000];

fn put(index: u64, key: String) -> Entry {
    let command = Command::new(Operation::Put(PutRequest::new(key, b"v".to_vec())));
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 0), index),
        payload: EntryPayload::Normal(command.into()),
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime");
    let prefix = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("prefix") => true,
        Some(other) => {
            eprintln!("watch_fanout: unknown argument {other:?}; give nothing or `prefix`");
            std::process::exit(2);
        }
    };
    runtime.block_on(measure(prefix));
}

/// The selector of watcher `i`.
fn selector(i: usize, prefix: bool) -> KeySelector {
    match prefix {
        true => KeySelector::Prefix(format!("watched/{i}/").into()),
        false => KeySelector::Key(format!("watched/{i}").into()),
    }
}

async fn measure(prefix: bool) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (_log, mut sm) = open(dir.path(), StoreConfig::default()).expect("open the store");
    let reader = sm.reader();
    let mut index = 0;
    let mut baseline = None;
    println!("{} watchers", if prefix { "prefix" } else { "single-key" });
    println!("watchers  us/write  polls/write  ratio_vs_0");
    for n in WATCHERS {
        let polls = Arc::new(AtomicU64::new(0));
        let delivered = Arc::new(AtomicU64::new(0));
        let from = reader.revision().expect("revision") + 1;
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let mut watcher = reader.watch(selector(i, prefix), from);
                let (polls, delivered) = (polls.clone(), delivered.clone());
                tokio::spawn(async move {
                    loop {
                        let mut next = std::pin::pin!(watcher.next());
                        let event = poll_fn(|cx| {
                            polls.fetch_add(1, Ordering::Relaxed);
                            next.as_mut().poll(cx)
                        })
                        .await;
                        if event.is_err() {
                            return;
                        }
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        // Every watcher has registered and gone idle before the clock starts.
        while polls.load(Ordering::Relaxed) < n as u64 {
            tokio::task::yield_now().await;
        }
        tokio::task::yield_now().await;
        let polls_before = polls.load(Ordering::Relaxed);
        let start = Instant::now();
        for _ in 0..WRITES {
            index += 1;
            sm.apply([put(index, format!("unwatched/{index}"))])
                .await
                .expect("apply");
            // Run every task the write woke: a yield runs a few dozen of
            // them, so yield until one passes without a watcher poll.
            loop {
                let before = polls.load(Ordering::Relaxed);
                tokio::task::yield_now().await;
                if polls.load(Ordering::Relaxed) == before {
                    break;
                }
            }
        }
        let elapsed = start.elapsed();
        let polls_per_write = (polls.load(Ordering::Relaxed) - polls_before) as f64 / WRITES as f64;
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
        assert_eq!(
            reader.revision().expect("revision"),
            index,
            "every write applied"
        );
        assert_eq!(delivered.load(Ordering::Relaxed), 0, "no watcher matched");
        let per_write = elapsed.as_secs_f64() * 1e6 / WRITES as f64;
        let base = *baseline.get_or_insert(per_write);
        println!(
            "{n:>8}  {per_write:>8.1}  {polls_per_write:>11.1}  {:>10.2}",
            per_write / base
        );
    }
}
