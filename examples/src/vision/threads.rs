//! Running a model's forward pass on a fixed number of CPU threads.
//!
//! candle's CPU kernels parallelise with rayon: convolutions and element-wise
//! loops run on the *current* rayon pool, and matrix products go to `gemm`,
//! which splits its work into `RAYON_NUM_THREADS` (else one per core) tasks
//! and runs them on the current pool too. Inside [`CpuThreads::install`] that
//! pool is this one, so a one-thread pool keeps a forward pass on one core:
//! on a 2-core machine, two single-threaded replicas beat one replica using
//! both cores for these small models.

use super::error::Result;

/// A dedicated rayon pool for model inference.
pub struct CpuThreads {
    pool: rayon::ThreadPool,
}

impl CpuThreads {
    /// A pool of `threads` threads (at least one).
    pub fn new(threads: usize) -> Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("vision-cpu-{i}"))
            .build()?;
        Ok(Self { pool })
    }

    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Runs `f` (e.g. `|| model.forward(&xs)`) with candle's parallel work
    /// confined to this pool.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_runs_inside_the_pool() {
        let threads = CpuThreads::new(1).unwrap();
        assert_eq!(threads.threads(), 1);
        let seen = threads.install(rayon::current_num_threads);
        assert_eq!(seen, 1);
        assert_eq!(CpuThreads::new(0).unwrap().threads(), 1);
    }
}
