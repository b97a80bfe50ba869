//! Depthwise 2-D convolution (one filter per channel) as a candle custom op.
//!
//! candle's `conv2d` with `groups = channels` splits the input into one
//! single-channel convolution per channel and concatenates the results: a
//! thousand tiny im2col + gemm calls per layer for EfficientNet's last
//! blocks. Here the whole layer is one pass over the input, planes spread
//! over the current rayon pool, with asymmetric zero padding (TensorFlow's
//! "SAME"), the bias and the activation folded in.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::im2col::{contiguous_f32, Activation};

/// Zero padding on each side, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pad {
    pub top: usize,
    pub bottom: usize,
    pub left: usize,
    pub right: usize,
}

impl Pad {
    pub fn uniform(p: usize) -> Self {
        Self {
            top: p,
            bottom: p,
            left: p,
            right: p,
        }
    }
}

/// `y[n, c] = conv(x[n, c], w[c]) + b[c]` for an `f32` NCHW input.
#[derive(Debug, Clone)]
pub struct DepthwiseConv2d {
    /// `channels × k × k`, row-major.
    weight: Vec<f32>,
    bias: Vec<f32>,
    channels: usize,
    kernel: usize,
    stride: usize,
}

impl DepthwiseConv2d {
    /// `weight` is `(channels, 1, k, k)` and `bias` `(channels,)`.
    pub fn new(weight: &Tensor, bias: &Tensor, stride: usize) -> Result<Self> {
        let (channels, one, kh, kw) = weight.dims4()?;
        if one != 1 || kh != kw {
            candle_core::bail!(
                "depthwise weight must be (C, 1, k, k), got {:?}",
                weight.shape()
            )
        }
        let bias = bias.to_vec1::<f32>()?;
        if bias.len() != channels {
            candle_core::bail!(
                "depthwise bias has {} values for {channels} channels",
                bias.len()
            )
        }
        Ok(Self {
            weight: weight.flatten_all()?.to_vec1::<f32>()?,
            bias,
            channels,
            kernel: kh,
            stride,
        })
    }

    /// Runs the convolution with the given padding, then `activation`.
    pub fn forward(&self, xs: &Tensor, pad: Pad, activation: &Activation) -> Result<Tensor> {
        xs.contiguous()?.apply_op1_no_bwd(&Padded {
            conv: self,
            pad,
            activation,
        })
    }
}

struct Padded<'a> {
    conv: &'a DepthwiseConv2d,
    pad: Pad,
    activation: &'a Activation,
}

impl CustomOp1 for Padded<'_> {
    fn name(&self) -> &'static str {
        "depthwise-conv2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let input = contiguous_f32(self.name(), storage, layout)?;
        let (n, c, h, w) = layout.shape().dims4()?;
        let conv = self.conv;
        if c != conv.channels {
            candle_core::bail!(
                "depthwise-conv2d: input has {c} channels, weight {}",
                conv.channels
            )
        }
        let (k, s, pad) = (conv.kernel, conv.stride, self.pad);
        let (ph, pw) = (h + pad.top + pad.bottom, w + pad.left + pad.right);
        if ph < k || pw < k {
            candle_core::bail!("depthwise-conv2d: input {h}×{w} smaller than kernel {k}")
        }
        let (oh, ow) = ((ph - k) / s + 1, (pw - k) / s + 1);
        let mut out = vec![0f32; n * c * oh * ow];
        let activation = self.activation;
        // Each input plane is copied once into a zero-padded scratch plane,
        // split by column phase (column `x` of the padded row goes to phase
        // `x % s`, position `x / s`): every tap then reads a contiguous run
        // of a row, with no bounds checks, whatever the stride.
        let phase_w = pw.div_ceil(s);
        let phase_len = ph * phase_w;
        // Where tap (ky, kx) reads for output row 0 and column 0.
        let taps: Vec<usize> = (0..k * k)
            .map(|t| {
                let (ky, kx) = (t / k, t % k);
                (kx % s) * phase_len + ky * phase_w + kx / s
            })
            .collect();
        out.par_chunks_mut(oh * ow).enumerate().for_each_init(
            || vec![0f32; s * phase_len],
            |padded, (plane, dst)| {
                let ch = plane % c;
                let src = &input[plane * h * w..(plane + 1) * h * w];
                padded.fill(0.0);
                for (y, row) in src.chunks_exact(w).enumerate() {
                    let py = y + pad.top;
                    if s == 1 {
                        let at = py * phase_w + pad.left;
                        padded[at..at + w].copy_from_slice(row);
                        continue;
                    }
                    for phase in 0..s {
                        // Input columns x with (x + left) % s == phase.
                        let first = (phase + s - pad.left % s) % s;
                        let at = phase * phase_len + py * phase_w + (first + pad.left) / s;
                        for (t, &v) in padded[at..]
                            .iter_mut()
                            .zip(row.iter().skip(first).step_by(s))
                        {
                            *t = v;
                        }
                    }
                }
                let filter = &conv.weight[ch * k * k..(ch + 1) * k * k];
                for (oy, out_row) in dst.chunks_exact_mut(ow).enumerate() {
                    out_row.fill(conv.bias[ch]);
                    let row_base = oy * s * phase_w;
                    for (&tap, &offset) in filter.iter().zip(&taps) {
                        let inputs = &padded[row_base + offset..row_base + offset + ow];
                        for (o, &x) in out_row.iter_mut().zip(inputs) {
                            *o += tap * x;
                        }
                    }
                }
                activation.apply(ch, dst);
            },
        );
        Ok((CpuStorage::F32(out), Shape::from((n, c, oh, ow))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::test_util::{assert_close, ConvCase};
    use candle_core::{Device, Tensor};

    /// The custom op agrees with candle's grouped conv2d plus bias.
    fn check(case: ConvCase) {
        let c = 3;
        let (xs, weight) = (case.input(c), case.weight(c, 1));
        let bias = Tensor::new(&[0.5f32, -1.0, 2.0], &Device::Cpu).unwrap();
        let want = xs
            .conv2d(&weight, case.pad, case.stride, 1, c)
            .unwrap()
            .broadcast_add(&bias.reshape((1, c, 1, 1)).unwrap())
            .unwrap();
        let got = DepthwiseConv2d::new(&weight, &bias, case.stride)
            .unwrap()
            .forward(&xs, Pad::uniform(case.pad), &Activation::Identity)
            .unwrap();
        assert_close(&got, &want, &format!("{case:?}"));
    }

    #[test]
    fn matches_grouped_conv2d() {
        ConvCase::all().into_iter().for_each(check);
    }

    #[test]
    fn asymmetric_padding() {
        // TF "SAME" for an even 4×4 input, k 3, stride 2: 0 before, 1 after.
        let dev = Device::Cpu;
        let xs = Tensor::ones((1, 1, 4, 4), candle_core::DType::F32, &dev).unwrap();
        let weight = Tensor::ones((1, 1, 3, 3), candle_core::DType::F32, &dev).unwrap();
        let bias = Tensor::zeros(1, candle_core::DType::F32, &dev).unwrap();
        let pad = Pad {
            top: 0,
            bottom: 1,
            left: 0,
            right: 1,
        };
        let got = DepthwiseConv2d::new(&weight, &bias, 2)
            .unwrap()
            .forward(&xs, pad, &Activation::Identity)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(got, vec![9.0, 6.0, 6.0, 4.0]);
    }
}
