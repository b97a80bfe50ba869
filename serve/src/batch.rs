//! Dynamic batching, like Ray Serve's `@serve.batch`: concurrent calls to
//! [`Batcher::call`] are grouped into one call of the batch function (up to
//! `max_batch_size` items, waiting at most `batch_wait_timeout` after the
//! first item of a batch), and each caller gets its own answer back.
//!
//! Batching pays off for models whose cost per item falls with the batch
//! size (a batched candle forward). A replica keeps one `Batcher` and calls
//! it from its (concurrent, `&self`) handlers; replicas take several
//! requests at once up to `max_ongoing_requests`, so set that at least as
//! high as `max_batch_size`.
//!
//! Every batch is observed in the `troupe_serve_batch_size` histogram, labelled
//! with the batcher's name.

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::http::ServeError;

/// How a [`Batcher`] groups calls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchConfig {
    /// At most this many items per batch (Ray's default: 10).
    pub max_batch_size: usize,
    /// How long a batch waits for more items after its first (Ray's
    /// default: 0.01 s).
    pub batch_wait_timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_batch_size: 10,
            batch_wait_timeout: Duration::from_millis(10),
        }
    }
}

type Slot<I, O> = (I, oneshot::Sender<Result<O, ServeError>>);

/// Groups concurrent calls into batches; see the module docs.
pub struct Batcher<I, O> {
    tx: mpsc::Sender<Slot<I, O>>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Batcher {
            tx: self.tx.clone(),
        }
    }
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// A batcher running `run` on each batch; `run` must answer with one
    /// output per input, in order. `name` labels its metric. Starts a task
    /// on the current tokio runtime, which ends when the last clone of the
    /// batcher is dropped.
    ///
    /// # Panics
    ///
    /// If `max_batch_size` is 0.
    pub fn new<F, Fut>(name: &str, config: BatchConfig, run: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<O>, ServeError>> + Send + 'static,
    {
        assert!(
            config.max_batch_size > 0,
            "max_batch_size must be at least 1"
        );
        let (tx, rx) = mpsc::channel(config.max_batch_size * 4);
        let histogram = crate::metrics::metrics()
            .batch_size
            .with_label_values(&[name]);
        tokio::spawn(batch_loop(rx, config, run, histogram));
        Batcher { tx }
    }

    /// Adds `item` to the next batch and waits for its output.
    pub async fn call(&self, item: I) -> Result<O, ServeError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((item, reply))
            .await
            .map_err(|_| ServeError::Unavailable("the batcher has stopped".into()))?;
        answer.await.map_err(|_| {
            ServeError::Unavailable("the batch function dropped this call's answer".into())
        })?
    }
}

async fn batch_loop<I, O, F, Fut>(
    mut rx: mpsc::Receiver<Slot<I, O>>,
    config: BatchConfig,
    run: F,
    histogram: prometheus::Histogram,
) where
    F: Fn(Vec<I>) -> Fut,
    Fut: Future<Output = Result<Vec<O>, ServeError>>,
{
    while let Some(first) = rx.recv().await {
        let mut slots = vec![first];
        let deadline = tokio::time::Instant::now() + config.batch_wait_timeout;
        while slots.len() < config.max_batch_size {
            // Whatever is already waiting joins without a timer.
            match rx.try_recv() {
                Ok(slot) => {
                    slots.push(slot);
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(slot)) => slots.push(slot),
                Ok(None) | Err(_) => break,
            }
        }
        // Callers that gave up are not worth a forward pass.
        slots.retain(|(_, reply)| !reply.is_closed());
        if slots.is_empty() {
            continue;
        }
        histogram.observe(slots.len() as f64);
        let (items, replies): (Vec<I>, Vec<_>) = slots.into_iter().unzip();
        let n = items.len();
        match run(items).await {
            Ok(outputs) if outputs.len() == n => {
                for (reply, output) in replies.into_iter().zip(outputs) {
                    let _ = reply.send(Ok(output));
                }
            }
            Ok(outputs) => {
                let error = ServeError::Application {
                    message: format!(
                        "the batch function answered {} outputs for {n} inputs",
                        outputs.len()
                    ),
                };
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
            Err(error) => {
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    type Seen = Arc<Mutex<Vec<Vec<u32>>>>;

    fn recording(config: BatchConfig) -> (Batcher<u32, u32>, Seen) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let batcher = Batcher::new("test", config, move |items: Vec<u32>| {
            record.lock().unwrap().push(items.clone());
            async move { Ok(items.into_iter().map(|x| x * 10).collect()) }
        });
        (batcher, seen)
    }

    #[tokio::test]
    async fn concurrent_calls_share_batches_and_each_gets_its_own_answer() {
        let (batcher, seen) = recording(BatchConfig {
            max_batch_size: 4,
            batch_wait_timeout: Duration::from_secs(5),
        });
        let calls = (0..8u32).map(|i| {
            let b = batcher.clone();
            async move { (i, b.call(i).await.unwrap()) }
        });
        for (i, out) in futures::future::join_all(calls).await {
            assert_eq!(out, i * 10);
        }
        let batches = seen.lock().unwrap().clone();
        // 8 calls at once, 4 per batch: two full batches, no timer needed.
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4]);
    }

    #[tokio::test]
    async fn a_lone_call_goes_after_the_wait() {
        let (batcher, seen) = recording(BatchConfig {
            max_batch_size: 4,
            batch_wait_timeout: Duration::from_millis(5),
        });
        assert_eq!(batcher.call(7).await.unwrap(), 70);
        assert_eq!(*seen.lock().unwrap(), vec![vec![7]]);
    }

    #[tokio::test]
    async fn errors_and_wrong_counts_reach_every_caller() {
        let failing = Batcher::new("fail", BatchConfig::default(), |_: Vec<u32>| async {
            Err::<Vec<u32>, _>(ServeError::BadRequest("no".into()))
        });
        assert!(matches!(
            failing.call(1).await,
            Err(ServeError::BadRequest(_))
        ));
        let short = Batcher::new("short", BatchConfig::default(), |_: Vec<u32>| async {
            Ok(Vec::<u32>::new())
        });
        let e = short.call(1).await.unwrap_err();
        assert!(e.to_string().contains("0 outputs for 1 inputs"), "{e}");
    }
}
