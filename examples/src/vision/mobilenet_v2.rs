//! MobileNetV2 (Sandler et al., 2018) with torchvision's parameter names
//! (`features.N…`, `classifier.1`), as in `mobilenet_v2-b0353104.pth`.
//!
//! Batch norm is folded into the convolutions at load time. Inputs are
//! `(batch, 3, 224, 224)` with ImageNet normalisation
//! ([`NORMALIZATION`]); the output is `(batch, num_classes)` logits.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::conv_bn::Activation::{Identity, Relu6};
use super::conv_bn::{ConvBnStyle, Padding};
use super::inverted_residual::{InvertedResidual, InvertedResidualNet};
use super::preprocess::Normalization;

/// The input normalisation the torchvision weights were trained with.
pub const NORMALIZATION: Normalization = Normalization::IMAGENET;

/// Symmetric padding and torchvision's batch-norm epsilon.
const CONV_BN: ConvBnStyle = ConvBnStyle {
    padding: Padding::Symmetric,
    bn_eps: 1e-5,
};

/// `(expansion t, output channels c, repeats n, first stride s)` per stage.
const STAGES: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub num_classes: usize,
}

impl Config {
    /// The ImageNet-1k classifier.
    pub fn imagenet() -> Self {
        Self { num_classes: 1000 }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::imagenet()
    }
}

/// An inverted residual block: expand (1×1), depthwise (3×3), project (1×1).
fn inverted_residual(
    vb: VarBuilder,
    inp: usize,
    out: usize,
    stride: usize,
    t: usize,
) -> Result<InvertedResidual> {
    let hidden = inp * t;
    let vb = vb.pp("conv");
    // torchvision numbers the layers of `conv` differently when there
    // is no expansion: [dw, project conv, project bn].
    let (expand, dw, project, project_bn) = if t == 1 {
        (None, "0", "1", "2")
    } else {
        let expand = CONV_BN.load(&vb, "0.0", "0.1", (inp, hidden, 1, 1, 1), Relu6)?;
        (Some(expand), "1", "2", "3")
    };
    let depthwise = CONV_BN.load(
        &vb,
        &format!("{dw}.0"),
        &format!("{dw}.1"),
        (hidden, hidden, 3, stride, hidden),
        Relu6,
    )?;
    let project = CONV_BN.load(&vb, project, project_bn, (hidden, out, 1, 1, 1), Identity)?;
    let residual = stride == 1 && inp == out;
    Ok(InvertedResidual::new(expand, depthwise, project, residual))
}

pub struct MobileNetV2(InvertedResidualNet);

impl MobileNetV2 {
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let features = vb.pp("features");
        let stem = CONV_BN.load(&features, "0.0", "0.1", (3, 32, 3, 2, 1), Relu6)?;
        let mut blocks = Vec::new();
        let mut inp = 32;
        for (t, c, n, s) in STAGES {
            for i in 0..n {
                let stride = if i == 0 { s } else { 1 };
                let index = blocks.len() + 1;
                blocks.push(inverted_residual(features.pp(index), inp, c, stride, t)?);
                inp = c;
            }
        }
        let last = blocks.len() + 1;
        let head = CONV_BN.load(
            &features,
            &format!("{last}.0"),
            &format!("{last}.1"),
            (inp, 1280, 1, 1, 1),
            Relu6,
        )?;
        let classifier = candle_nn::linear(1280, cfg.num_classes, vb.pp("classifier.1"))?;
        Ok(Self(InvertedResidualNet::new(
            stem, blocks, head, classifier,
        )))
    }

    /// `(batch, 3, 224, 224)` normalised images → `(batch, classes)` logits.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.0.forward(xs)
    }
}

impl Module for MobileNetV2 {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        MobileNetV2::forward(self, xs)
    }
}
