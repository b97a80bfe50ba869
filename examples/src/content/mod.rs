//! The flagship example: content understanding, the pipeline of the Ray
//! Serve 2.0 talk, on real pretrained models in candle.
//!
//! ```text
//!  HTTP ─▶ ingress ─▶ downloader ─▶ preprocessor ─▶ detector (MTCNN)
//!             │                                         │
//!             │      faces ◀──────── dynamic dispatch ──┘
//!             │        │                  │ no face
//!             │        ▼                  ▼
//!             │   boxes + landmarks   mobilenet_v2 ║ efficientnet_lite0  (batched, at once)
//!             │                                  ▼
//!             └─────────────────────────▶ combine: mean probabilities, top 5
//! ```
//!
//! Every stage is its own deployment with its own resources and replicas
//! (`examples/content_understanding/serve.yaml`); model work runs on each
//! replica's own threads ([`model_thread`]), never on an event loop.
//!
//! - [`source`]: what a request carries (bytes, base64, a URL from an
//!   allowed host) and the checks on it. Pure but for the download.
//! - [`combine`]: averaging the classifiers, top 5. Pure.
//! - [`stages`]: the deployments.

pub mod combine;
pub mod model_thread;
pub mod source;
pub mod stages;

use serde::{Deserialize, Serialize};
use troupe::prelude::*;

use stages::{
    ClassifierArgs, ClassifierModel, Detector, DetectorArgs, Downloader, DownloaderArgs, Ingress,
    IngressArgs, Preprocessor, PreprocessorArgs,
};

/// The application builder's arguments (a config's `args`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContentArgs {
    /// Hosts the downloader fetches from (default: loopback only).
    pub allowed_hosts: Vec<String>,
    /// Largest image accepted, bytes.
    pub max_image_bytes: usize,
    pub download_timeout_ms: u64,
    /// Threads each model replica computes on.
    pub threads_per_replica: usize,
    /// Classifier batching: at most this many images a forward pass (1:
    /// off), waiting at most `batch_wait_timeout_ms` for them.
    pub max_batch_size: usize,
    pub batch_wait_timeout_ms: u64,
    /// Use a GPU where there is one and candle has `cuda`.
    pub prefer_gpu: bool,
    /// The detector sees the image at most this many pixels on its longer
    /// side.
    pub detect_side: u32,
}

impl Default for ContentArgs {
    fn default() -> Self {
        ContentArgs {
            allowed_hosts: vec!["127.0.0.1".into(), "localhost".into(), "::1".into()],
            max_image_bytes: 8 * 1024 * 1024,
            download_timeout_ms: 10_000,
            threads_per_replica: 1,
            max_batch_size: 4,
            batch_wait_timeout_ms: 10,
            prefer_gpu: true,
            detect_side: 640,
        }
    }
}

/// The pipeline as an application, with default resources that fit a
/// 2-core machine (a config can change any of them).
pub fn app(args: ContentArgs) -> Application {
    let mut app = Application::new("content");
    let downloader = app.add(
        Bind::<Downloader>::new(
            "downloader",
            DownloaderArgs {
                allowed_hosts: args.allowed_hosts.clone(),
                max_image_bytes: args.max_image_bytes,
                timeout_ms: args.download_timeout_ms,
            },
        )
        .num_cpus(0.1)
        .max_ongoing_requests(16),
    );
    let preprocessor = app.add(
        Bind::<Preprocessor>::new(
            "preprocessor",
            PreprocessorArgs {
                threads: args.threads_per_replica,
                detect_side: args.detect_side,
            },
        )
        .num_cpus(0.25)
        .max_ongoing_requests(16),
    );
    let detector = app.add(
        Bind::<Detector>::new(
            "detector",
            DetectorArgs {
                threads: args.threads_per_replica,
                prefer_gpu: args.prefer_gpu,
            },
        )
        .num_cpus(0.5)
        .max_ongoing_requests(16),
    );
    let classifiers = [
        ClassifierModel::MobilenetV2,
        ClassifierModel::EfficientnetLite0,
    ]
    .map(|model| {
        let handle = app.add(
            Bind::<stages::Classifier>::new(
                model.name(),
                ClassifierArgs {
                    model,
                    threads: args.threads_per_replica,
                    prefer_gpu: args.prefer_gpu,
                    max_batch_size: args.max_batch_size,
                    batch_wait_timeout_ms: args.batch_wait_timeout_ms,
                },
            )
            .num_cpus(0.5)
            // Enough requests at once to fill a batch.
            .max_ongoing_requests(args.max_batch_size.max(4) as u32 * 2),
        );
        (model.name().to_owned(), handle)
    })
    .to_vec();
    app.ingress(
        Bind::<Ingress>::new(
            "ingress",
            IngressArgs {
                downloader,
                preprocessor,
                detector,
                classifiers,
            },
        )
        .num_cpus(0.1)
        .max_ongoing_requests(64),
    )
}

/// The example's deployment types and its application.
pub fn catalog() -> Catalog {
    Catalog::new()
        .deployment(DeploymentType::<Ingress>::new().http())
        .deployment(DeploymentType::<Downloader>::new().serves::<stages::Fetch>())
        .deployment(DeploymentType::<Preprocessor>::new().serves::<stages::Preprocess>())
        .deployment(DeploymentType::<Detector>::new().serves::<stages::Detect>())
        .deployment(DeploymentType::<stages::Classifier>::new().serves::<stages::Classify>())
        .app_with_args("content", app)
}
