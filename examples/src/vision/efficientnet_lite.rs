//! EfficientNet-Lite0 (Tan & Le; the "Lite" variants drop squeeze-excite
//! and use ReLU6) with the parameter names of lukemelas' EfficientNet-PyTorch
//! (`_conv_stem`, `_bn0`, `_blocks.N._expand_conv/_bn0/_depthwise_conv/_bn1/
//! _project_conv/_bn2`, `_conv_head`, `_bn1`, `_fc`), as in
//! `efficientnet-lite0-57934424.pth`.
//!
//! Batch norm (epsilon 1e-3) is folded into the convolutions at load time.
//! The output is `(batch, num_classes)` logits.
//!
//! # Padding and input normalisation
//!
//! The weight file does not say how its convolutions pad or what input it
//! expects, so both were settled on real photos (scikit-image's originals,
//! resized to 256 and center-cropped to 224), as probability of the right
//! class(es):
//!
//! | padding   | input               | chelsea: cat (281+282+285) | coffee: espresso | motorcycle_left: moped |
//! |-----------|---------------------|----------------------------|------------------|------------------------|
//! | **SAME**  | **(x − 127) / 128** | **0.915**                  | **0.954**        | **0.500**              |
//! | SAME      | ImageNet mean/std   | 0.869                      | 0.842            | 0.343                  |
//! | symmetric | ImageNet mean/std   | 0.913                      | 0.862            | 0.405                  |
//! | symmetric | (x − 127) / 128     | 0.910                      | 0.928            | 0.490                  |
//!
//! All four are right, but TensorFlow "SAME" padding with `[-1, 1]` inputs
//! is the most confident on every photo, and it is how the Lite models were
//! trained in TensorFlow (the file's convolution weights are still laid out
//! in TensorFlow's HWIO order). That is [`Config::lite0`] and
//! [`NORMALIZATION`]. (MobileNetV2 on the same photos: 0.993, 0.992, 0.684.)

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::conv_bn::Activation::{Identity, Relu6};
use super::conv_bn::{ConvBnStyle, Padding};
use super::inverted_residual::{InvertedResidual, InvertedResidualNet};
use super::preprocess::Normalization;

/// The input normalisation the weights expect (see the module docs).
pub const NORMALIZATION: Normalization = Normalization::SIGNED;

const BN_EPS: f64 = 1e-3;

/// One MBConv block: `(kernel, stride, expansion, in, out)`.
type BlockArgs = (usize, usize, usize, usize, usize);

/// The sixteen blocks of EfficientNet-Lite0 (width and depth 1.0): the
/// B0 stages, whose strides the weight file does not record.
const LITE0_BLOCKS: [BlockArgs; 16] = [
    (3, 1, 1, 32, 16),
    (3, 2, 6, 16, 24),
    (3, 1, 6, 24, 24),
    (5, 2, 6, 24, 40),
    (5, 1, 6, 40, 40),
    (3, 2, 6, 40, 80),
    (3, 1, 6, 80, 80),
    (3, 1, 6, 80, 80),
    (5, 1, 6, 80, 112),
    (5, 1, 6, 112, 112),
    (5, 1, 6, 112, 112),
    (5, 2, 6, 112, 192),
    (5, 1, 6, 192, 192),
    (5, 1, 6, 192, 192),
    (5, 1, 6, 192, 192),
    (3, 1, 6, 192, 320),
];

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub num_classes: usize,
    /// How the convolutions pad (see the module docs for the choice).
    pub padding: Padding,
}

impl Config {
    /// EfficientNet-Lite0 for ImageNet-1k, with TensorFlow "SAME" padding.
    pub fn lite0() -> Self {
        Self {
            num_classes: 1000,
            padding: Padding::Same,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::lite0()
    }
}

/// One MBConv block, `_blocks.N`.
fn mb_conv(
    vb: VarBuilder,
    (k, stride, t, inp, out): BlockArgs,
    style: ConvBnStyle,
) -> Result<InvertedResidual> {
    let hidden = inp * t;
    let expand = if t == 1 {
        None
    } else {
        Some(style.load(&vb, "_expand_conv", "_bn0", (inp, hidden, 1, 1, 1), Relu6)?)
    };
    let depthwise = style.load(
        &vb,
        "_depthwise_conv",
        "_bn1",
        (hidden, hidden, k, stride, hidden),
        Relu6,
    )?;
    let project = style.load(
        &vb,
        "_project_conv",
        "_bn2",
        (hidden, out, 1, 1, 1),
        Identity,
    )?;
    let residual = stride == 1 && inp == out;
    Ok(InvertedResidual::new(expand, depthwise, project, residual))
}

pub struct EfficientNetLite(InvertedResidualNet);

impl EfficientNetLite {
    /// Loads EfficientNet-Lite0.
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let style = ConvBnStyle {
            padding: cfg.padding,
            bn_eps: BN_EPS,
        };
        let stem = style.load(&vb, "_conv_stem", "_bn0", (3, 32, 3, 2, 1), Relu6)?;
        let blocks = LITE0_BLOCKS
            .iter()
            .enumerate()
            .map(|(i, &args)| mb_conv(vb.pp("_blocks").pp(i), args, style))
            .collect::<Result<Vec<_>>>()?;
        let head = style.load(&vb, "_conv_head", "_bn1", (320, 1280, 1, 1, 1), Relu6)?;
        let fc = candle_nn::linear(1280, cfg.num_classes, vb.pp("_fc"))?;
        Ok(Self(InvertedResidualNet::new(stem, blocks, head, fc)))
    }

    /// `(batch, 3, 224, 224)` normalised images → `(batch, classes)` logits.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.0.forward(xs)
    }
}

impl Module for EfficientNetLite {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        EfficientNetLite::forward(self, xs)
    }
}
