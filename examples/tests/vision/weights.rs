//! Bad weight files give errors that name the file and the tensor.

use std::path::Path;

use candle_core::Device;
use candle_nn::VarBuilder;
use troupe_examples::vision::mtcnn::{PNet, RNet};
use troupe_examples::vision::{load_model, mobilenet_v2, pth, Error, MobileNetV2, ModelFiles};

use crate::support::model_files;

fn pnet_copy(dir: &Path, keep: impl Fn(usize) -> usize) -> std::path::PathBuf {
    let [pnet, _, _] = model_files().mtcnn().unwrap();
    let bytes = std::fs::read(pnet).unwrap();
    let copy = dir.join("pnet.pt");
    std::fs::write(&copy, &bytes[..keep(bytes.len())]).unwrap();
    copy
}

#[test]
fn truncated_storage_names_the_tensor_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // The last storage in pnet.pt holds `prelu2.weight` (16 floats).
    let copy = pnet_copy(dir.path(), |len| len - 40);
    let err = load_model(&copy, &Device::Cpu, PNet::load).err().unwrap();
    let message = err.to_string();
    assert!(matches!(err, Error::Weights { .. }), "{message}");
    assert!(message.contains(&copy.display().to_string()), "{message}");
    assert!(message.contains("truncated"), "{message}");
    assert!(message.contains("'prelu2.weight'"), "{message}");
}

#[test]
fn truncated_pickle_is_reported_against_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let copy = pnet_copy(dir.path(), |_| 1000);
    let err = pth::load(&copy, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains(&copy.display().to_string()), "{err}");
    assert!(err.contains("state dict pickle"), "{err}");
}

/// The message of loading `file` with `build`, which must fail.
fn load_error<M>(
    file: &Path,
    build: impl FnOnce(VarBuilder<'static>) -> candle_core::Result<M>,
) -> String {
    match load_model(file, &Device::Cpu, build) {
        Ok(_) => panic!("{} loaded", file.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn another_models_file_names_the_missing_or_misshapen_tensor() {
    let files = model_files();
    let [pnet, _, _] = files.mtcnn().unwrap();
    let err = load_error(&pnet, RNet::load);
    assert!(
        err.contains("pnet.pt") && err.contains("conv1.weight"),
        "{err}"
    );

    let efficientnet = files.efficientnet_lite0().unwrap();
    let err = load_error(&efficientnet, |vb| {
        MobileNetV2::load(vb, &mobilenet_v2::Config::imagenet())
    });
    assert!(
        err.contains("efficientnet-lite0") && err.contains("features.0.0.weight"),
        "{err}"
    );
}

#[test]
fn missing_weights_say_how_to_fetch_them() {
    let dir = tempfile::tempdir().unwrap();
    let err = ModelFiles::at(dir.path())
        .load_mobilenet_v2(&Device::Cpu)
        .err()
        .unwrap();
    assert!(matches!(err, Error::MissingWeights { .. }), "{err}");
    assert!(err.to_string().contains("fetch-models.sh"), "{err}");
}
