//! Fetching the weights once, loading each model once, and the fixtures.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use image::RgbImage;
use troupe_examples::vision::{
    mtcnn, preprocess, EfficientNetLite, MobileNetV2, ModelFiles, Mtcnn, Normalization,
    FETCH_SCRIPT,
};

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("examples/ has a parent")
}

/// The model cache, filled by the fetch script if anything is missing. The
/// `OnceLock` runs the script once per test binary; the script itself takes
/// a file lock, so concurrent test binaries do not race either.
pub fn model_files() -> &'static ModelFiles {
    static FILES: OnceLock<ModelFiles> = OnceLock::new();
    FILES.get_or_init(|| {
        let files = ModelFiles::from_env();
        let complete = files.mobilenet_v2().is_ok()
            && files.efficientnet_lite0().is_ok()
            && files.mtcnn().is_ok();
        if !complete {
            let script = repo_root().join(FETCH_SCRIPT);
            let status = Command::new("bash")
                .arg(&script)
                .current_dir(repo_root())
                .status()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
            assert!(status.success(), "{} failed: {status}", script.display());
        }
        files
    })
}

pub fn mobilenet_v2() -> &'static MobileNetV2 {
    static MODEL: OnceLock<MobileNetV2> = OnceLock::new();
    MODEL.get_or_init(|| {
        model_files()
            .load_mobilenet_v2(&Device::Cpu)
            .expect("load MobileNetV2")
    })
}

pub fn efficientnet_lite0() -> &'static EfficientNetLite {
    static MODEL: OnceLock<EfficientNetLite> = OnceLock::new();
    MODEL.get_or_init(|| {
        model_files()
            .load_efficientnet_lite0(&Device::Cpu)
            .expect("load EfficientNet-Lite0")
    })
}

pub fn mtcnn() -> &'static Mtcnn {
    static MODEL: OnceLock<Mtcnn> = OnceLock::new();
    MODEL.get_or_init(|| {
        model_files()
            .load_mtcnn(&mtcnn::Config::default(), &Device::Cpu)
            .expect("load MTCNN")
    })
}

pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("content_understanding/fixtures")
        .join(name)
}

pub fn fixture(name: &str) -> RgbImage {
    preprocess::open_rgb(&fixture_path(name)).expect("decode fixture")
}

/// A fixture as a `(1, 3, 224, 224)` classifier input.
pub fn input(name: &str, norm: Normalization) -> Tensor {
    preprocess::to_input(&fixture(name), norm, &Device::Cpu).expect("preprocess")
}
