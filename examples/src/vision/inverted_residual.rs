//! What MobileNetV2 and EfficientNet-Lite share: the inverted residual block
//! (MBConv, here without squeeze-excite) and the network around it. Each
//! model loads them from its own parameter names.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::Linear;

use super::conv_bn::ConvBn;

/// Expand (1×1, skipped for an expansion of 1), depthwise, project (1×1,
/// no activation), plus the input when the shape allows.
pub struct InvertedResidual {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    residual: bool,
}

impl InvertedResidual {
    /// `residual`: add the input to the output (stride 1 and as many
    /// channels out as in).
    pub fn new(expand: Option<ConvBn>, depthwise: ConvBn, project: ConvBn, residual: bool) -> Self {
        Self {
            expand,
            depthwise,
            project,
            residual,
        }
    }
}

impl Module for InvertedResidual {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut ys = match &self.expand {
            Some(expand) => expand.forward(xs)?,
            None => xs.clone(),
        };
        ys = self.depthwise.forward(&ys)?;
        ys = self.project.forward(&ys)?;
        if self.residual {
            ys = (ys + xs)?;
        }
        Ok(ys)
    }
}

/// Stem convolution, inverted residual blocks, 1×1 head convolution, global
/// average pooling and a linear classifier.
pub struct InvertedResidualNet {
    stem: ConvBn,
    blocks: Vec<InvertedResidual>,
    head: ConvBn,
    classifier: Linear,
}

impl InvertedResidualNet {
    pub fn new(
        stem: ConvBn,
        blocks: Vec<InvertedResidual>,
        head: ConvBn,
        classifier: Linear,
    ) -> Self {
        Self {
            stem,
            blocks,
            head,
            classifier,
        }
    }
}

impl Module for InvertedResidualNet {
    /// `(batch, 3, H, W)` normalised images → `(batch, classes)` logits.
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut ys = self.stem.forward(xs)?;
        for block in &self.blocks {
            ys = block.forward(&ys)?;
        }
        ys = self.head.forward(&ys)?;
        let pooled = ys.mean(D::Minus1)?.mean(D::Minus1)?;
        self.classifier.forward(&pooled)
    }
}
