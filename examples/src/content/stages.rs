//! The pipeline's deployments: Downloader → Preprocessor → Detector →
//! (dynamic dispatch) → Classifiers (an ensemble, batched) → Combine, in
//! the ingress.

use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use image::RgbImage;
use serde::{Deserialize, Serialize};
use serde_json::json;
use troupe::prelude::*;
use troupe::serve::batch::{BatchConfig, Batcher};

use super::combine::{average, scale_box, top_k};
use super::model_thread::ModelThread;
use super::source::{self, ImageSource, StageError};
use crate::vision::{self, mtcnn, preprocess, EfficientNetLite, MobileNetV2, ModelFiles};

/// The device a model runs on: a GPU when asked for and there is one
/// (candle built with `cuda`), else the CPU, saying why.
pub fn device(prefer_gpu: bool, what: &str) -> Device {
    if prefer_gpu {
        match Device::cuda_if_available(0) {
            Ok(device) if device.is_cuda() => return device,
            _ => tracing::info!(
                model = what,
                "no CUDA device (or built without the `cuda` feature): running on the CPU"
            ),
        }
    }
    Device::Cpu
}

// ---------------------------------------------------------------- Downloader

/// Limits of the downloader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DownloaderArgs {
    /// Hosts URLs may name (default: loopback only).
    pub allowed_hosts: Vec<String>,
    /// Largest image accepted, bytes.
    pub max_image_bytes: usize,
    pub timeout_ms: u64,
}

/// Fetches images by URL from allowed hosts, or takes them from the
/// request; checks they are JPEG or PNG within the size limit.
pub struct Downloader {
    args: DownloaderArgs,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fetch(pub ImageSource);

impl Message for Fetch {
    type Reply = Result<serde_bytes::ByteBuf, StageError>;
    const NAME: &'static str = "content.Downloader.Fetch";
}

impl Deployment for Downloader {
    const NAME: &'static str = "content.Downloader";
    type Args = DownloaderArgs;

    async fn new(args: DownloaderArgs, _: &ReplicaContext) -> Result<Self, String> {
        Ok(Downloader { args })
    }
}

impl Serves<Fetch> for Downloader {
    async fn call(&self, Fetch(source): Fetch) -> Result<serde_bytes::ByteBuf, StageError> {
        let limit = self.args.max_image_bytes;
        let bytes = match source {
            ImageSource::Bytes(bytes) => bytes,
            ImageSource::Base64(text) => source::decode_base64(&text, limit)?,
            ImageSource::Url(url) => {
                source::allowed_host(&url, &self.args.allowed_hosts)?;
                let timeout = Duration::from_millis(self.args.timeout_ms);
                tokio::task::spawn_blocking(move || source::download(&url, limit, timeout))
                    .await
                    .map_err(|e| StageError::internal(format!("the download task failed: {e}")))??
            }
        };
        source::check_image(&bytes, limit)?;
        Ok(serde_bytes::ByteBuf::from(bytes))
    }
}

// -------------------------------------------------------------- Preprocessor

/// Decodes, then makes the two inputs: the 224×224 center crop the
/// classifiers take and a copy at most `detect_side` pixels on its longer
/// side for the detector.
pub struct Preprocessor {
    work: ModelThread<()>,
    detect_side: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreprocessorArgs {
    pub threads: usize,
    pub detect_side: u32,
}

/// An RGB image, row-major, 3 bytes a pixel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rgb {
    pub width: u32,
    pub height: u32,
    #[serde(with = "serde_bytes")]
    pub pixels: Vec<u8>,
}

impl Rgb {
    fn from_image(image: RgbImage) -> Rgb {
        Rgb {
            width: image.width(),
            height: image.height(),
            pixels: image.into_raw(),
        }
    }

    fn into_image(self) -> Result<RgbImage, StageError> {
        RgbImage::from_raw(self.width, self.height, self.pixels)
            .ok_or_else(|| StageError::internal("an RGB buffer of the wrong size"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Prepared {
    pub width: u32,
    pub height: u32,
    /// The classifiers' 224×224 crop.
    pub crop: Rgb,
    /// The detector's copy, and original pixels per pixel of it.
    pub detect: Rgb,
    pub detect_scale: f32,
    /// Time the decode and resizes took.
    pub compute_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Preprocess(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl Message for Preprocess {
    type Reply = Result<Prepared, StageError>;
    const NAME: &'static str = "content.Preprocessor.Preprocess";
}

impl Deployment for Preprocessor {
    const NAME: &'static str = "content.Preprocessor";
    type Args = PreprocessorArgs;

    async fn new(args: PreprocessorArgs, cx: &ReplicaContext) -> Result<Self, String> {
        let work =
            ModelThread::start(&format!("pre-{}", cx.replica), args.threads, || Ok(())).await?;
        Ok(Preprocessor {
            work,
            detect_side: args.detect_side,
        })
    }
}

/// The pure part of preprocessing.
pub fn prepare(bytes: &[u8], detect_side: u32) -> Result<Prepared, StageError> {
    let started = Instant::now();
    let image = preprocess::decode_rgb(bytes)
        .map_err(|e| StageError::bad_request(format!("the image does not decode: {e}")))?;
    let (width, height) = image.dimensions();
    let crop = preprocess::resize_and_crop(&image);
    let longer = width.max(height);
    let (detect, detect_scale) = if longer > detect_side {
        let scale = detect_side as f32 / longer as f32;
        let (w, h) = (
            ((width as f32 * scale).round() as u32).max(1),
            ((height as f32 * scale).round() as u32).max(1),
        );
        let small = image::imageops::resize(&image, w, h, image::imageops::FilterType::Triangle);
        (small, longer as f32 / detect_side as f32)
    } else {
        (image, 1.0)
    };
    Ok(Prepared {
        width,
        height,
        crop: Rgb::from_image(crop),
        detect: Rgb::from_image(detect),
        detect_scale,
        compute_ms: started.elapsed().as_secs_f64() * 1e3,
    })
}

impl Serves<Preprocess> for Preprocessor {
    async fn call(&self, Preprocess(bytes): Preprocess) -> Result<Prepared, StageError> {
        let side = self.detect_side;
        self.work.run(move |()| prepare(&bytes, side)).await?
    }
}

// ------------------------------------------------------------------ Detector

/// MTCNN: the faces in an image.
pub struct Detector {
    model: ModelThread<mtcnn::Mtcnn>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DetectorArgs {
    pub threads: usize,
    pub prefer_gpu: bool,
}

/// A face in the detector's copy of the image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaceBox {
    pub bbox: [f32; 4],
    pub score: f32,
    pub landmarks: [[f32; 2]; 5],
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Detect(pub Rgb);

impl Message for Detect {
    type Reply = Result<(Vec<FaceBox>, f64), StageError>;
    const NAME: &'static str = "content.Detector.Detect";
}

impl Deployment for Detector {
    const NAME: &'static str = "content.Detector";
    type Args = DetectorArgs;

    async fn new(args: DetectorArgs, cx: &ReplicaContext) -> Result<Self, String> {
        let device = device(args.prefer_gpu, "mtcnn");
        let model = ModelThread::start(&format!("mtcnn-{}", cx.replica), args.threads, move || {
            ModelFiles::from_env()
                .load_mtcnn(&mtcnn::Config::default(), &device)
                .map_err(|e| e.to_string())
        })
        .await?;
        Ok(Detector { model })
    }
}

impl Serves<Detect> for Detector {
    async fn call(&self, Detect(rgb): Detect) -> Result<(Vec<FaceBox>, f64), StageError> {
        let image = rgb.into_image()?;
        self.model
            .run(move |model| {
                let started = Instant::now();
                let faces = model
                    .detect(&image)
                    .map_err(|e| StageError::internal(format!("MTCNN failed: {e}")))?;
                let ms = started.elapsed().as_secs_f64() * 1e3;
                let faces = faces
                    .into_iter()
                    .map(|f| FaceBox {
                        bbox: f.bbox,
                        score: f.score,
                        landmarks: f.landmarks,
                    })
                    .collect();
                Ok((faces, ms))
            })
            .await?
    }
}

// --------------------------------------------------------------- Classifiers

/// Which classifier a `Classifier` replica runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassifierModel {
    MobilenetV2,
    EfficientnetLite0,
}

impl ClassifierModel {
    pub fn name(self) -> &'static str {
        match self {
            ClassifierModel::MobilenetV2 => "mobilenet_v2",
            ClassifierModel::EfficientnetLite0 => "efficientnet_lite0",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassifierArgs {
    pub model: ClassifierModel,
    pub threads: usize,
    pub prefer_gpu: bool,
    /// Batching (Ray's `@serve.batch`); 1 turns it off.
    pub max_batch_size: usize,
    pub batch_wait_timeout_ms: u64,
}

enum Net {
    MobileNet(MobileNetV2),
    EfficientNet(EfficientNetLite),
}

/// A loaded classifier with its input normalisation.
pub struct LoadedClassifier {
    net: Net,
    norm: vision::Normalization,
    device: Device,
}

impl LoadedClassifier {
    pub fn load(model: ClassifierModel, device: Device) -> Result<Self, String> {
        let files = ModelFiles::from_env();
        let (net, norm) = match model {
            ClassifierModel::MobilenetV2 => (
                Net::MobileNet(
                    files
                        .load_mobilenet_v2(&device)
                        .map_err(|e| e.to_string())?,
                ),
                vision::mobilenet_v2::NORMALIZATION,
            ),
            ClassifierModel::EfficientnetLite0 => (
                Net::EfficientNet(
                    files
                        .load_efficientnet_lite0(&device)
                        .map_err(|e| e.to_string())?,
                ),
                vision::efficientnet_lite::NORMALIZATION,
            ),
        };
        Ok(LoadedClassifier { net, norm, device })
    }

    /// Probabilities for each 224×224 crop, with one batched forward.
    pub fn classify(&self, crops: &[RgbImage]) -> candle_core::Result<Vec<Vec<f32>>> {
        let inputs = crops
            .iter()
            .map(|c| preprocess::normalized_chw(c, self.norm, &self.device))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let batch = Tensor::stack(&inputs, 0)?;
        let logits = match &self.net {
            Net::MobileNet(m) => m.forward(&batch)?,
            Net::EfficientNet(m) => m.forward(&batch)?,
        };
        candle_nn::ops::softmax_last_dim(&logits)?.to_vec2::<f32>()
    }
}

/// An ImageNet classifier replica: batches concurrent requests into one
/// forward pass on its own threads.
pub struct Classifier {
    batcher: Batcher<RgbImage, Classified>,
}

/// One image's answer from a classifier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Classified {
    pub probs: Vec<f32>,
    /// The batched forward pass this image was part of.
    pub forward_ms: f64,
    pub batch_size: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Classify(pub Rgb);

impl Message for Classify {
    type Reply = Result<Classified, StageError>;
    const NAME: &'static str = "content.Classifier.Classify";
}

impl Deployment for Classifier {
    const NAME: &'static str = "content.Classifier";
    type Args = ClassifierArgs;

    async fn new(args: ClassifierArgs, cx: &ReplicaContext) -> Result<Self, String> {
        let device = device(args.prefer_gpu, args.model.name());
        let which = args.model;
        let model = ModelThread::start(
            &format!("{}-{}", which.name(), cx.replica),
            args.threads,
            move || LoadedClassifier::load(which, device),
        )
        .await?;
        let config = BatchConfig {
            max_batch_size: args.max_batch_size.max(1),
            batch_wait_timeout: Duration::from_millis(args.batch_wait_timeout_ms),
        };
        let batcher = Batcher::new(
            &format!("{}/{}", cx.deployment, which.name()),
            config,
            move |crops: Vec<RgbImage>| {
                let model = model.clone();
                async move {
                    let out = model
                        .run(move |m| {
                            let started = Instant::now();
                            let probs = m.classify(&crops);
                            (probs, started.elapsed().as_secs_f64() * 1e3, crops.len())
                        })
                        .await
                        .map_err(|e| ServeError::Application { message: e.message })?;
                    let (probs, ms, n) = out;
                    let probs = probs.map_err(|e| ServeError::Application {
                        message: format!("the forward pass failed: {e}"),
                    })?;
                    Ok(probs
                        .into_iter()
                        .map(|probs| Classified {
                            probs,
                            forward_ms: ms,
                            batch_size: n,
                        })
                        .collect())
                }
            },
        );
        Ok(Classifier { batcher })
    }
}

impl Serves<Classify> for Classifier {
    async fn call(&self, Classify(rgb): Classify) -> Result<Classified, StageError> {
        let crop = rgb.into_image()?;
        self.batcher
            .call(crop)
            .await
            .map_err(|e| StageError::internal(e.to_string()))
    }
}

// ------------------------------------------------------------------ Ingress

/// The ingress: runs the stages, dispatches on faces, combines.
pub struct Ingress {
    args: IngressArgs,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngressArgs {
    pub downloader: DeploymentHandle<Downloader>,
    pub preprocessor: DeploymentHandle<Preprocessor>,
    pub detector: DeploymentHandle<Detector>,
    /// The ensemble: (model name, deployment).
    pub classifiers: Vec<(String, DeploymentHandle<Classifier>)>,
}

impl Deployment for Ingress {
    const NAME: &'static str = "content.Ingress";
    type Args = IngressArgs;

    async fn new(args: IngressArgs, _: &ReplicaContext) -> Result<Self, String> {
        Ok(Ingress { args })
    }
}

fn stage_error(e: StageError) -> ServeResponse {
    ServeResponse::json(&json!({ "error": e.message })).with_status(e.status)
}

fn ms(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 1e4).round() / 10.0
}

impl HttpIngress for Ingress {
    async fn http(&self, request: ServeRequest) -> Result<ServeResponse, ServeError> {
        if request.method != "POST" {
            return Ok(stage_error(StageError::bad_request(
                "POST an image (JPEG or PNG), or JSON {\"url\": ...} or {\"image_base64\": ...}",
            )));
        }
        match self.run(&request).await {
            Ok(answer) => Ok(ServeResponse::json(&answer)),
            Err(Stop::Client(e)) => Ok(stage_error(e)),
            Err(Stop::Serve(e)) => Err(e),
        }
    }
}

/// Why a request stopped: the client's fault (4xx, said in the body) or
/// the cluster's (the proxy's statuses).
enum Stop {
    Client(StageError),
    Serve(ServeError),
}

impl From<ServeError> for Stop {
    fn from(e: ServeError) -> Self {
        Stop::Serve(e)
    }
}

impl From<StageError> for Stop {
    fn from(e: StageError) -> Self {
        match e.status {
            400..=499 => Stop::Client(e),
            _ => Stop::Serve(ServeError::Application { message: e.message }),
        }
    }
}

impl Ingress {
    async fn run(&self, request: &ServeRequest) -> Result<serde_json::Value, Stop> {
        let started = Instant::now();
        let source = source::parse_request(request.header("content-type"), &request.body)?;
        let t = Instant::now();
        let bytes = self.args.downloader.call(Fetch(source)).await??;
        let download_ms = ms(t);
        let t = Instant::now();
        let prepared = self
            .args
            .preprocessor
            .call(Preprocess(bytes.into_vec()))
            .await??;
        let preprocess_ms = ms(t);
        let t = Instant::now();
        let (faces, mtcnn_ms) = self.args.detector.call(Detect(prepared.detect)).await??;
        let detect_ms = ms(t);
        if !faces.is_empty() {
            // The face branch.
            let boxes: Vec<_> = faces
                .iter()
                .map(|f| {
                    json!({
                        "box": scale_box(f.bbox, prepared.detect_scale),
                        "score": f.score,
                        "landmarks": f.landmarks.map(|[x, y]| [x * prepared.detect_scale, y * prepared.detect_scale]),
                    })
                })
                .collect();
            return Ok(json!({
                "object": "face",
                "score": faces[0].score,
                "top5": [],
                "boxes": boxes,
                "models": { "mtcnn": { "faces": faces.len(), "forward_ms": mtcnn_ms } },
                "timings_ms": {
                    "download": download_ms,
                    "preprocess": preprocess_ms,
                    "preprocess_compute": prepared.compute_ms,
                    "detect": detect_ms,
                    "mtcnn_forward": mtcnn_ms,
                    "total": ms(started),
                },
            }));
        }
        // The classifier ensemble, fanned out at once.
        let t = Instant::now();
        let calls = self
            .args
            .classifiers
            .iter()
            .map(|(_, handle)| handle.call(Classify(prepared.crop.clone())));
        let answers = futures::future::join_all(calls).await;
        let classify_ms = ms(t);
        let mut per_model = serde_json::Map::new();
        let mut all = Vec::new();
        for ((name, _), answer) in self.args.classifiers.iter().zip(answers) {
            let answer = answer??;
            let best = &top_k(&answer.probs, 1)[0];
            per_model.insert(
                name.clone(),
                json!({
                    "object": best.label,
                    "score": best.score,
                    "forward_ms": answer.forward_ms,
                    "batch_size": answer.batch_size,
                }),
            );
            all.push(answer.probs);
        }
        let refs: Vec<&[f32]> = all.iter().map(Vec::as_slice).collect();
        let mean = average(&refs).map_err(StageError::internal)?;
        let top5 = top_k(&mean, 5);
        Ok(json!({
            "object": top5[0].label,
            "score": top5[0].score,
            "top5": top5,
            "boxes": [],
            "models": per_model,
            "timings_ms": {
                "download": download_ms,
                "preprocess": preprocess_ms,
                "preprocess_compute": prepared.compute_ms,
                "detect": detect_ms,
                "mtcnn_forward": mtcnn_ms,
                "classify": classify_ms,
                "total": ms(started),
            },
        }))
    }
}
