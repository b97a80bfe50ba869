//! The three MTCNN networks (Zhang et al., 2016) with facenet-pytorch's
//! parameter names (`conv1`, `prelu1`, …, `dense5_1`, …), as in its
//! `pnet.pt`, `rnet.pt` and `onet.pt`.
//!
//! The weights were converted from the original Caffe models, which were
//! trained on transposed images; facenet-pytorch keeps the convolutions as
//! they are and transposes the feature map before the first dense layer
//! (`permute(0, 3, 2, 1)`, flattening in `(W, H, C)` order). So do we.
//! Inputs are `(batch, 3, H, W)` RGB scaled as `(x − 127.5) / 128`.

use candle_core::{CpuStorage, CustomOp1, Layout, Module, Result, Shape, Tensor, D};
use candle_nn::{Conv2d, Linear, VarBuilder};

use crate::vision::depthwise::Pad;
use crate::vision::im2col::{self, bias_activation_in_place, contiguous_f32, Activation};

/// `max(x, 0) + a · min(x, 0)` with one slope `a` per channel (dim 1).
struct PRelu {
    slope: Tensor,
}

impl PRelu {
    fn load(vb: VarBuilder, channels: usize) -> Result<Self> {
        Ok(Self {
            slope: vb.get(channels, "weight")?,
        })
    }
}

impl Module for PRelu {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut shape = vec![1; xs.rank()];
        shape[1] = self.slope.dim(0)?;
        let slope = self.slope.reshape(shape)?;
        let positive = xs.relu()?;
        let negative = (xs - &positive)?;
        positive + negative.broadcast_mul(&slope)?
    }
}

/// PyTorch's `MaxPool2d(kernel, stride, ceil_mode=True)`: a last, partial
/// window is kept (it always starts inside the input).
fn max_pool_ceil(xs: &Tensor, kernel: usize, stride: usize) -> Result<Tensor> {
    if xs.device().is_cpu() {
        return xs
            .contiguous()?
            .apply_op1_no_bwd(&MaxPoolCeil { kernel, stride });
    }
    // Elsewhere: pad by repeating the edge, which keeps the maximum of the
    // partial window (it also holds the edge pixel).
    let (_, _, h, w) = xs.dims4()?;
    let extra = |size: usize| {
        let out = pooled_size(size, kernel, stride);
        ((out - 1) * stride + kernel).saturating_sub(size)
    };
    xs.pad_with_same(2, 0, extra(h))?
        .pad_with_same(3, 0, extra(w))?
        .max_pool2d_with_stride(kernel, stride)
}

fn pooled_size(size: usize, kernel: usize, stride: usize) -> usize {
    size.saturating_sub(kernel).div_ceil(stride) + 1
}

struct MaxPoolCeil {
    kernel: usize,
    stride: usize,
}

impl CustomOp1 for MaxPoolCeil {
    fn name(&self) -> &'static str {
        "max-pool-ceil"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let input = contiguous_f32(self.name(), storage, layout)?;
        let (n, c, h, w) = layout.shape().dims4()?;
        let (k, s) = (self.kernel, self.stride);
        let (oh, ow) = (pooled_size(h, k, s), pooled_size(w, k, s));
        let mut out = vec![f32::NEG_INFINITY; n * c * oh * ow];
        for (src, dst) in input.chunks_exact(h * w).zip(out.chunks_exact_mut(oh * ow)) {
            for (oy, dst_row) in dst.chunks_exact_mut(ow).enumerate() {
                for row in src.chunks_exact(w).skip(oy * s).take(k) {
                    for (ox, d) in dst_row.iter_mut().enumerate() {
                        let window = &row[ox * s..(ox * s + k).min(w)];
                        *d = window.iter().fold(*d, |m, &v| m.max(v));
                    }
                }
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((n, c, oh, ow))))
    }
}

fn conv(vb: &VarBuilder, name: &str, inp: usize, out: usize, k: usize) -> Result<Conv2d> {
    candle_nn::conv2d(inp, out, k, Default::default(), vb.pp(name))
}

/// Conv + PReLU; on the CPU an im2col convolution with the bias and the
/// PReLU applied in place.
struct ConvPRelu {
    /// `(out, in, k, k)`, for other devices.
    weight: Tensor,
    /// `(out, in·k·k)`.
    flat: Tensor,
    bias: Tensor,
    bias_values: Vec<f32>,
    prelu: PRelu,
    activation: Activation,
    kernel: usize,
}

impl ConvPRelu {
    fn load(vb: &VarBuilder, n: usize, inp: usize, out: usize, k: usize) -> Result<Self> {
        let conv = vb.pp(format!("conv{n}"));
        let weight = conv.get((out, inp, k, k), "weight")?;
        let bias = conv.get(out, "bias")?;
        let prelu = PRelu::load(vb.pp(format!("prelu{n}")), out)?;
        Ok(Self {
            flat: weight.reshape((out, inp * k * k))?,
            weight,
            bias_values: bias.to_vec1()?,
            bias: bias.reshape((1, out, 1, 1))?,
            activation: Activation::PRelu(prelu.slope.to_vec1()?),
            prelu,
            kernel: k,
        })
    }
}

impl Module for ConvPRelu {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        if xs.device().is_cpu() {
            let ys = im2col::conv2d(xs, &self.flat, self.kernel, 1, Pad::default())?;
            bias_activation_in_place(&ys, &self.bias_values, &self.activation)?;
            Ok(ys)
        } else {
            let ys = xs
                .conv2d(&self.weight, 0, 1, 1, 1)?
                .broadcast_add(&self.bias)?;
            self.prelu.forward(&ys)
        }
    }
}

/// Flattens `(N, C, H, W)` in the `(W, H, C)` order the dense layers expect.
fn flatten_transposed(xs: &Tensor) -> Result<Tensor> {
    xs.permute((0, 3, 2, 1))?.contiguous()?.flatten_from(1)
}

/// The proposal network: fully convolutional, a 12×12 window per output
/// cell with stride 2.
pub struct PNet {
    convs: [ConvPRelu; 3],
    score: Conv2d,
    regression: Conv2d,
}

impl PNet {
    pub fn load(vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            convs: [
                ConvPRelu::load(&vb, 1, 3, 10, 3)?,
                ConvPRelu::load(&vb, 2, 10, 16, 3)?,
                ConvPRelu::load(&vb, 3, 16, 32, 3)?,
            ],
            score: conv(&vb, "conv4_1", 32, 2, 1)?,
            regression: conv(&vb, "conv4_2", 32, 4, 1)?,
        })
    }

    /// `(batch, 3, H, W)` → (box regression `(batch, 4, h, w)`, face
    /// probability `(batch, h, w)`), `h = ceil((H − 2) / 2) − 4`.
    pub fn forward(&self, xs: &Tensor) -> Result<(Tensor, Tensor)> {
        let xs = self.convs[0].forward(xs)?;
        let xs = max_pool_ceil(&xs, 2, 2)?;
        let xs = self.convs[2].forward(&self.convs[1].forward(&xs)?)?;
        let probs = candle_nn::ops::softmax(&self.score.forward(&xs)?, 1)?;
        let face = probs.narrow(1, 1, 1)?.squeeze(1)?;
        Ok((self.regression.forward(&xs)?, face))
    }
}

/// The refinement network, on 24×24 crops.
pub struct RNet {
    convs: [ConvPRelu; 3],
    dense4: Linear,
    prelu4: PRelu,
    score: Linear,
    regression: Linear,
}

impl RNet {
    pub fn load(vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            convs: [
                ConvPRelu::load(&vb, 1, 3, 28, 3)?,
                ConvPRelu::load(&vb, 2, 28, 48, 3)?,
                ConvPRelu::load(&vb, 3, 48, 64, 2)?,
            ],
            dense4: candle_nn::linear(576, 128, vb.pp("dense4"))?,
            prelu4: PRelu::load(vb.pp("prelu4"), 128)?,
            score: candle_nn::linear(128, 2, vb.pp("dense5_1"))?,
            regression: candle_nn::linear(128, 4, vb.pp("dense5_2"))?,
        })
    }

    /// `(batch, 3, 24, 24)` → (box regression `(batch, 4)`, face
    /// probability `(batch,)`).
    pub fn forward(&self, xs: &Tensor) -> Result<(Tensor, Tensor)> {
        let xs = max_pool_ceil(&self.convs[0].forward(xs)?, 3, 2)?;
        let xs = max_pool_ceil(&self.convs[1].forward(&xs)?, 3, 2)?;
        let xs = flatten_transposed(&self.convs[2].forward(&xs)?)?;
        let xs = self.prelu4.forward(&self.dense4.forward(&xs)?)?;
        let probs = candle_nn::ops::softmax(&self.score.forward(&xs)?, D::Minus1)?;
        Ok((
            self.regression.forward(&xs)?,
            probs.narrow(1, 1, 1)?.squeeze(1)?,
        ))
    }
}

/// The output network, on 48×48 crops: final boxes and five landmarks.
pub struct ONet {
    convs: [ConvPRelu; 4],
    dense5: Linear,
    prelu5: PRelu,
    score: Linear,
    regression: Linear,
    landmarks: Linear,
}

/// What the O-Net says about a batch of crops.
pub struct ONetOutput {
    /// `(batch, 4)` box corrections, in box widths and heights.
    pub regression: Tensor,
    /// `(batch, 10)`: five x then five y, as fractions of the box.
    pub landmarks: Tensor,
    /// `(batch,)` face probability.
    pub face: Tensor,
}

impl ONet {
    pub fn load(vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            convs: [
                ConvPRelu::load(&vb, 1, 3, 32, 3)?,
                ConvPRelu::load(&vb, 2, 32, 64, 3)?,
                ConvPRelu::load(&vb, 3, 64, 64, 3)?,
                ConvPRelu::load(&vb, 4, 64, 128, 2)?,
            ],
            dense5: candle_nn::linear(1152, 256, vb.pp("dense5"))?,
            prelu5: PRelu::load(vb.pp("prelu5"), 256)?,
            score: candle_nn::linear(256, 2, vb.pp("dense6_1"))?,
            regression: candle_nn::linear(256, 4, vb.pp("dense6_2"))?,
            landmarks: candle_nn::linear(256, 10, vb.pp("dense6_3"))?,
        })
    }

    /// `(batch, 3, 48, 48)` crops → regression, landmarks, probability.
    pub fn forward(&self, xs: &Tensor) -> Result<ONetOutput> {
        let xs = max_pool_ceil(&self.convs[0].forward(xs)?, 3, 2)?;
        let xs = max_pool_ceil(&self.convs[1].forward(&xs)?, 3, 2)?;
        let xs = max_pool_ceil(&self.convs[2].forward(&xs)?, 2, 2)?;
        let xs = flatten_transposed(&self.convs[3].forward(&xs)?)?;
        let xs = self.prelu5.forward(&self.dense5.forward(&xs)?)?;
        let probs = candle_nn::ops::softmax(&self.score.forward(&xs)?, D::Minus1)?;
        Ok(ONetOutput {
            regression: self.regression.forward(&xs)?,
            landmarks: self.landmarks.forward(&xs)?,
            face: probs.narrow(1, 1, 1)?.squeeze(1)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn ceil_mode_pooling_keeps_the_partial_window() {
        let xs = Tensor::arange(0f32, 25.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 5, 5))
            .unwrap();
        let ys = max_pool_ceil(&xs, 2, 2).unwrap();
        assert_eq!(ys.dims(), &[1, 1, 3, 3]);
        let v = ys.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v, vec![6.0, 8.0, 9.0, 16.0, 18.0, 19.0, 21.0, 23.0, 24.0]);
        // RNet's 22 → 11 with kernel 3, stride 2.
        let xs = Tensor::zeros((1, 1, 22, 22), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(max_pool_ceil(&xs, 3, 2).unwrap().dims(), &[1, 1, 11, 11]);
    }

    #[test]
    fn prelu_scales_negatives_per_channel() {
        let dev = Device::Cpu;
        let prelu = PRelu {
            slope: Tensor::new(&[0.5f32, 2.0], &dev).unwrap(),
        };
        let xs = Tensor::new(&[[-2f32, 3.0], [-1.0, 4.0]], &dev).unwrap();
        let ys = prelu.forward(&xs).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(ys, vec![vec![-1.0, 3.0], vec![-0.5, 4.0]]);
    }
}
