//! A convolution followed by batch norm and an activation, folded at load
//! time into one convolution with a bias (inference only): the building
//! block of MobileNetV2 and EfficientNet-Lite.
//!
//! On the CPU the layer is as few passes over memory as candle allows:
//! 1×1 convolutions are one matrix product (no im2col), depthwise ones our
//! one-pass kernel, others our im2col + matrix product, and bias +
//! activation are applied in place on the output (element-wise candle ops
//! would take three passes: add, max, min).
//! On other devices the same maths uses plain candle ops.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::depthwise::{DepthwiseConv2d, Pad};
pub use super::im2col::Activation;
use super::im2col::{self, bias_activation_in_place};

/// How a convolution pads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// `k / 2` zeros on every side, as PyTorch's `padding=k//2`.
    Symmetric,
    /// TensorFlow's "SAME": the output is `ceil(input / stride)` and any odd
    /// padding pixel goes after (bottom, right).
    Same,
}

impl Padding {
    /// The padding for an `h × w` input.
    pub fn pad(self, h: usize, w: usize, kernel: usize, stride: usize) -> Pad {
        match self {
            Padding::Symmetric => Pad::uniform(kernel / 2),
            Padding::Same => {
                let total = |size: usize| {
                    let out = size.div_ceil(stride);
                    ((out - 1) * stride + kernel).saturating_sub(size)
                };
                let (th, tw) = (total(h), total(w));
                Pad {
                    top: th / 2,
                    bottom: th - th / 2,
                    left: tw / 2,
                    right: tw - tw / 2,
                }
            }
        }
    }
}

/// Applies an activation with candle ops (devices other than the CPU).
fn activation_on_tensor(activation: &Activation, xs: Tensor) -> Result<Tensor> {
    match activation {
        Activation::Identity => Ok(xs),
        Activation::Relu6 => xs.clamp(0f32, 6f32),
        Activation::PRelu(_) => candle_core::bail!("PReLU after a ConvBn is not supported"),
    }
}

enum Kind {
    /// 1×1, stride 1: `(out, in)` times `(N, in, H·W)`.
    Pointwise { weight: Tensor },
    /// Any other dense convolution: `(out, in, k, k)` and `(out, in·k·k)`.
    Dense { weight: Tensor, flat: Tensor },
    /// One filter per channel; `weight` is kept for non-CPU devices.
    Depthwise {
        conv: DepthwiseConv2d,
        weight: Tensor,
    },
}

/// `act(bn(conv(x)))` as one convolution with bias.
pub struct ConvBn {
    kind: Kind,
    bias: Tensor,
    bias_values: Vec<f32>,
    kernel: usize,
    stride: usize,
    padding: Padding,
    activation: Activation,
}

/// The shape of a [`ConvBn`] to load.
#[derive(Debug, Clone)]
pub struct ConvBnConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    /// `in_channels` for a depthwise convolution, else 1.
    pub groups: usize,
    pub padding: Padding,
    pub bn_eps: f64,
    pub activation: Activation,
}

/// What all the [`ConvBn`] layers of a model have in common.
#[derive(Debug, Clone, Copy)]
pub struct ConvBnStyle {
    pub padding: Padding,
    pub bn_eps: f64,
}

impl ConvBnStyle {
    /// Loads the layer whose convolution is `vb.pp(conv)` and batch norm
    /// `vb.pp(bn)`.
    pub fn load(
        self,
        vb: &VarBuilder,
        conv: &str,
        bn: &str,
        (in_channels, out_channels, kernel, stride, groups): (usize, usize, usize, usize, usize),
        activation: Activation,
    ) -> Result<ConvBn> {
        let cfg = ConvBnConfig {
            in_channels,
            out_channels,
            kernel,
            stride,
            groups,
            padding: self.padding,
            bn_eps: self.bn_eps,
            activation,
        };
        ConvBn::load(vb.pp(conv), vb.pp(bn), cfg)
    }
}

impl ConvBn {
    /// Loads the convolution's `weight` from `conv` and `weight`, `bias`,
    /// `running_mean`, `running_var` from `bn`, and folds them together.
    pub fn load(conv: VarBuilder, bn: VarBuilder, cfg: ConvBnConfig) -> Result<Self> {
        let ConvBnConfig {
            in_channels,
            out_channels,
            kernel,
            stride,
            groups,
            padding,
            bn_eps,
            activation,
        } = cfg;
        let weight = conv.get(
            (out_channels, in_channels / groups, kernel, kernel),
            "weight",
        )?;
        let gamma = bn.get(out_channels, "weight")?;
        let beta = bn.get(out_channels, "bias")?;
        let mean = bn.get(out_channels, "running_mean")?;
        let var = bn.get(out_channels, "running_var")?;
        let scale = (gamma / (var + bn_eps)?.sqrt()?)?;
        let weight = weight.broadcast_mul(&scale.reshape((out_channels, 1, 1, 1))?)?;
        let bias = (beta - (mean * &scale)?)?;
        let kind = if groups == 1 && kernel == 1 && stride == 1 {
            Kind::Pointwise {
                weight: weight.reshape((out_channels, in_channels))?,
            }
        } else if groups == 1 {
            Kind::Dense {
                flat: weight.reshape((out_channels, in_channels * kernel * kernel))?,
                weight,
            }
        } else if groups == in_channels && in_channels == out_channels {
            Kind::Depthwise {
                conv: DepthwiseConv2d::new(&weight, &bias, stride)?,
                weight,
            }
        } else {
            candle_core::bail!("grouped convolutions other than depthwise are not supported")
        };
        Ok(Self {
            kind,
            bias_values: bias.to_vec1::<f32>()?,
            bias: bias.reshape((1, out_channels, 1, 1))?,
            kernel,
            stride,
            padding,
            activation,
        })
    }

    /// Adds the bias and applies the activation, in place on the CPU.
    fn epilogue(&self, ys: Tensor) -> Result<Tensor> {
        if ys.device().is_cpu() {
            let ys = ys.contiguous()?;
            bias_activation_in_place(&ys, &self.bias_values, &self.activation)?;
            Ok(ys)
        } else {
            activation_on_tensor(&self.activation, ys.broadcast_add(&self.bias)?)
        }
    }
}

impl Module for ConvBn {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = xs.dims4()?;
        let pad = self.padding.pad(h, w, self.kernel, self.stride);
        let groups = match &self.kind {
            Kind::Pointwise { weight } => {
                let ys = weight
                    .broadcast_matmul(&xs.reshape((n, c, h * w))?)?
                    .reshape((n, (), h, w))?;
                return self.epilogue(ys);
            }
            Kind::Depthwise { conv, .. } if xs.device().is_cpu() => {
                return conv.forward(xs, pad, &self.activation);
            }
            Kind::Dense { flat, .. } if xs.device().is_cpu() => {
                let ys = im2col::conv2d(xs, flat, self.kernel, self.stride, pad)?;
                return self.epilogue(ys);
            }
            Kind::Depthwise { .. } => c,
            Kind::Dense { .. } => 1,
        };
        let (Kind::Dense { weight, .. } | Kind::Depthwise { weight, .. }) = &self.kind else {
            unreachable!("pointwise convolutions returned above")
        };
        let ys = if pad == Pad::uniform(pad.top) {
            xs.conv2d(weight, pad.top, self.stride, 1, groups)?
        } else {
            xs.pad_with_zeros(2, pad.top, pad.bottom)?
                .pad_with_zeros(3, pad.left, pad.right)?
                .conv2d(weight, 0, self.stride, 1, groups)?
        };
        self.epilogue(ys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::test_util::{assert_close, sine};
    use candle_core::{DType, Device};
    use std::collections::HashMap;

    #[test]
    fn same_padding_matches_tensorflow() {
        // 224 → 112 with k 3, s 2: one pixel, after.
        let p = Padding::Same.pad(224, 224, 3, 2);
        assert_eq!((p.top, p.bottom, p.left, p.right), (0, 1, 0, 1));
        // k 5, s 2 on 56: three pixels, one before and two after.
        let p = Padding::Same.pad(56, 56, 5, 2);
        assert_eq!((p.top, p.bottom), (1, 2));
        // Stride 1 is symmetric for odd kernels.
        assert_eq!(Padding::Same.pad(14, 14, 5, 1), Pad::uniform(2));
        assert_eq!(Padding::Symmetric.pad(14, 14, 3, 2), Pad::uniform(1));
    }

    /// The folded layer equals conv → batch norm → ReLU6 done step by step.
    fn check_against_unfolded(cfg: ConvBnConfig) {
        let layer_cfg = cfg.clone();
        let dev = Device::Cpu;
        let (i, o, k) = (cfg.in_channels, cfg.out_channels, cfg.kernel);
        let weight = sine((o, i / cfg.groups, k, k), 0.7);
        let gamma = (sine(o, 1.3) + 1.5).unwrap();
        let beta = sine(o, 2.1);
        let mean = sine(o, 0.4);
        let var = (sine(o, 0.9).abs().unwrap() + 0.5).unwrap();
        let tensors = HashMap::from([
            ("c.weight".to_string(), weight.clone()),
            ("b.weight".to_string(), gamma.clone()),
            ("b.bias".to_string(), beta.clone()),
            ("b.running_mean".to_string(), mean.clone()),
            ("b.running_var".to_string(), var.clone()),
        ]);
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &dev);
        let layer = ConvBn::load(vb.pp("c"), vb.pp("b"), layer_cfg).unwrap();

        let xs = sine((2, i, 9, 9), 0.37);
        let pad = cfg.padding.pad(9, 9, k, cfg.stride);
        let col = |t: &Tensor| t.reshape((1, o, 1, 1)).unwrap();
        let want = xs
            .pad_with_zeros(2, pad.top, pad.bottom)
            .unwrap()
            .pad_with_zeros(3, pad.left, pad.right)
            .unwrap()
            .conv2d(&weight, 0, cfg.stride, 1, cfg.groups)
            .unwrap()
            .broadcast_sub(&col(&mean))
            .unwrap()
            .broadcast_div(&col(&(var + cfg.bn_eps).unwrap().sqrt().unwrap()))
            .unwrap()
            .broadcast_mul(&col(&gamma))
            .unwrap()
            .broadcast_add(&col(&beta))
            .unwrap();
        let want = activation_on_tensor(&cfg.activation, want).unwrap();
        let got = layer.forward(&xs).unwrap();
        assert_close(&got, &want, &format!("{cfg:?}"));
    }

    #[test]
    fn folded_layers_match_conv_then_batch_norm() {
        let cfg = |i, o, k, stride, groups, padding| ConvBnConfig {
            in_channels: i,
            out_channels: o,
            kernel: k,
            stride,
            groups,
            padding,
            bn_eps: 1e-3,
            activation: Activation::Relu6,
        };
        check_against_unfolded(cfg(4, 6, 1, 1, 1, Padding::Symmetric));
        check_against_unfolded(cfg(3, 5, 3, 2, 1, Padding::Same));
        check_against_unfolded(cfg(3, 5, 3, 2, 1, Padding::Symmetric));
        check_against_unfolded(cfg(4, 4, 5, 2, 4, Padding::Same));
        check_against_unfolded(ConvBnConfig {
            activation: Activation::Identity,
            ..cfg(4, 4, 3, 1, 4, Padding::Symmetric)
        });
    }
}
