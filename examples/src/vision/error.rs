//! The one error type of [`crate::vision`].

use std::path::PathBuf;

/// What can go wrong finding, reading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A weight file is not in the cache: it has not been fetched yet.
    #[error(
        "model file {path} is missing: run `bash examples/content_understanding/fetch-models.sh` \
         to fetch the weights (into $TROUPE_MODELS_DIR, by default `.models/` at the repository root)",
        path = .path.display()
    )]
    MissingWeights { path: PathBuf },

    /// A weight file is there but is not what the model needs: truncated,
    /// corrupt, or of another format. `reason` names the tensor involved.
    #[error("bad weight file {path}: {reason}", path = .path.display())]
    Weights { path: PathBuf, reason: String },

    #[error("cannot read {path}: {source}", path = .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot decode image: {0}")]
    Image(#[from] image::ImageError),

    /// A tensor operation failed, or a model's weights did not match its
    /// layers (the message names the missing or misshapen tensor).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// A thread pool could not be built.
    #[error("cannot build a thread pool: {0}")]
    ThreadPool(#[from] rayon::ThreadPoolBuildError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// candle attaches a backtrace to its errors when `RUST_BACKTRACE` is set;
/// in a message about a weight file, the message alone is wanted.
pub(crate) fn without_backtrace(mut e: candle_core::Error) -> candle_core::Error {
    while let candle_core::Error::WithBacktrace { inner, .. } = e {
        e = *inner;
    }
    e
}
