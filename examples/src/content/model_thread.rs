//! A replica's model on threads of its own: CPU-bound work never runs on
//! the actor's event loop (where it would stall every other request of
//! the replica) and uses exactly the threads the replica was given (on
//! small machines one thread per replica beats one replica across cores).

use std::sync::mpsc;

use tokio::sync::oneshot;

use super::source::StageError;
use crate::vision::CpuThreads;

type Job<M> = Box<dyn FnOnce(&M) + Send>;

/// A model owned by a dedicated thread; [`ModelThread::run`] sends it work.
/// The thread ends when the last clone is dropped.
pub struct ModelThread<M> {
    jobs: mpsc::Sender<Job<M>>,
}

impl<M> Clone for ModelThread<M> {
    fn clone(&self) -> Self {
        ModelThread {
            jobs: self.jobs.clone(),
        }
    }
}

impl<M: Send + Sync + 'static> ModelThread<M> {
    /// Starts thread `name`, loads the model there with `load` and keeps
    /// `threads` rayon threads for its work (candle's CPU kernels use the
    /// current rayon pool). Returns once the model is loaded, or its error.
    pub async fn start(
        name: &str,
        threads: usize,
        load: impl FnOnce() -> Result<M, String> + Send + 'static,
    ) -> Result<Self, String> {
        let (jobs, queue) = mpsc::channel::<Job<M>>();
        let (loaded, ready) = oneshot::channel();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let pool = match CpuThreads::new(threads) {
                    Ok(pool) => pool,
                    Err(e) => {
                        let _ = loaded.send(Err(format!("cannot start the model's threads: {e}")));
                        return;
                    }
                };
                let model = match pool.install(load) {
                    Ok(model) => model,
                    Err(e) => {
                        let _ = loaded.send(Err(e));
                        return;
                    }
                };
                let _ = loaded.send(Ok(()));
                while let Ok(job) = queue.recv() {
                    pool.install(|| job(&model));
                }
            })
            .map_err(|e| format!("cannot start thread {name}: {e}"))?;
        ready
            .await
            .map_err(|_| format!("thread {name} died while loading its model"))??;
        Ok(ModelThread { jobs })
    }

    /// Runs `work` on the model's thread and waits for its result.
    pub async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce(&M) -> R + Send + 'static,
    ) -> Result<R, StageError> {
        let (done, result) = oneshot::channel();
        let job: Job<M> = Box::new(move |model| {
            let _ = done.send(work(model));
        });
        self.jobs
            .send(job)
            .map_err(|_| StageError::internal("the model's thread has stopped"))?;
        result
            .await
            .map_err(|_| StageError::internal("the model's thread panicked"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_the_model_thread_with_its_threads() {
        let model = ModelThread::start("test-model", 1, || Ok(41))
            .await
            .unwrap();
        let (answer, name, threads) = model
            .run(|m| {
                (
                    m + 1,
                    std::thread::current().name().map(str::to_owned),
                    rayon::current_num_threads(),
                )
            })
            .await
            .unwrap();
        assert_eq!(answer, 42);
        assert_eq!(threads, 1);
        assert!(name.is_some_and(|n| n.starts_with("vision-cpu") || n == "test-model"));
        let failed = ModelThread::<u32>::start("bad", 1, || Err("no weights".into())).await;
        assert_eq!(failed.err().as_deref(), Some("no weights"));
    }
}
