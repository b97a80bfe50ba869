//! Dense 2-D convolution as im2col + one matrix product, for NCHW inputs.
//!
//! candle 0.9's CPU `conv2d` gathers its im2col tiles one element at a time
//! from an NHWC copy of the input; for the few-channel inputs of MTCNN and
//! the classifiers' stems that gathering costs more than the product. Here
//! each row of the column matrix is built from whole input-row slices, and
//! the product `(out, in·k·k) × (in·k·k, oh·ow)` lands directly in NCHW.
//!
//! Also here: the in-place epilogue every convolution ends with — add a
//! per-channel bias, then an activation — in one pass instead of candle's
//! one pass per element-wise op.

use candle_core::{CpuStorage, CustomOp1, InplaceOp1, Layout, Result, Shape, Tensor};

use super::depthwise::Pad;

/// The non-linearity after a convolution or dense layer.
#[derive(Debug, Clone, PartialEq)]
pub enum Activation {
    Identity,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `max(x, 0) + a[c] · min(x, 0)`, one slope per channel.
    PRelu(Vec<f32>),
}

impl Activation {
    /// Applies the activation to the values of channel `channel`.
    pub fn apply(&self, channel: usize, values: &mut [f32]) {
        match self {
            Activation::Identity => {}
            Activation::Relu6 => values.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0)),
            Activation::PRelu(slopes) => {
                let a = slopes[channel];
                values.iter_mut().for_each(|v| {
                    if *v < 0.0 {
                        *v *= a
                    }
                });
            }
        }
    }
}

/// `x ← act(x + bias[c])` in place for a contiguous `(N, C, …)` f32 tensor
/// (a fresh output: the caller must own its storage alone).
pub fn bias_activation_in_place(xs: &Tensor, bias: &[f32], activation: &Activation) -> Result<()> {
    xs.inplace_op1(&BiasActivation { bias, activation })
}

struct BiasActivation<'a> {
    bias: &'a [f32],
    activation: &'a Activation,
}

impl InplaceOp1 for BiasActivation<'_> {
    fn name(&self) -> &'static str {
        "bias-activation"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let CpuStorage::F32(values) = storage else {
            candle_core::bail!("bias-activation: only f32 is supported")
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("bias-activation: the tensor must be contiguous")
        };
        let dims = layout.dims();
        let channels = self.bias.len();
        if dims.len() < 2 || dims[1] != channels {
            candle_core::bail!("bias-activation: {dims:?} does not have {channels} channels")
        }
        let plane: usize = dims[2..].iter().product();
        if plane == 0 {
            return Ok(());
        }
        for (i, chunk) in values[start..end].chunks_mut(plane).enumerate() {
            let c = i % channels;
            let b = self.bias[c];
            chunk.iter_mut().for_each(|v| *v += b);
            self.activation.apply(c, chunk);
        }
        Ok(())
    }
}

/// The values of a custom op's input, which must be contiguous `f32`; `op`
/// names the op in errors.
pub fn contiguous_f32<'a>(op: &str, storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(values) = storage else {
        candle_core::bail!("{op}: only f32 inputs are supported")
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op}: input must be contiguous")
    };
    Ok(&values[start..end])
}

/// A dense convolution without bias: `weight` is `(out, in·k·k)` (the
/// PyTorch `(out, in, k, k)` weight, flattened).
pub fn conv2d(
    xs: &Tensor,
    weight: &Tensor,
    kernel: usize,
    stride: usize,
    pad: Pad,
) -> Result<Tensor> {
    let (n, _, h, w) = xs.dims4()?;
    let (oh, ow) = (
        (h + pad.top + pad.bottom - kernel) / stride + 1,
        (w + pad.left + pad.right - kernel) / stride + 1,
    );
    let cols = xs.contiguous()?.apply_op1_no_bwd(&Im2Col {
        kernel,
        stride,
        pad,
    })?;
    weight
        .broadcast_matmul(&cols)?
        .reshape((n, weight.dim(0)?, oh, ow))
}

/// `(N, C, H, W)` → `(N, C·k·k, oh·ow)`: row `(c, ky, kx)` holds, for each
/// output pixel, the input pixel that tap sees (zero in the padding).
struct Im2Col {
    kernel: usize,
    stride: usize,
    pad: Pad,
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let input = contiguous_f32(self.name(), storage, layout)?;
        let (n, c, h, w) = layout.shape().dims4()?;
        let (k, s, pad) = (self.kernel, self.stride, self.pad);
        let (ph, pw) = (h + pad.top + pad.bottom, w + pad.left + pad.right);
        if ph < k || pw < k {
            candle_core::bail!("im2col: input {h}×{w} smaller than kernel {k}")
        }
        let (oh, ow) = ((ph - k) / s + 1, (pw - k) / s + 1);
        let rows = c * k * k;
        let mut cols = vec![0f32; n * rows * oh * ow];
        for (image, out) in cols.chunks_exact_mut(rows * oh * ow).enumerate() {
            for (row, dst) in out.chunks_exact_mut(oh * ow).enumerate() {
                let (ch, ky, kx) = (row / (k * k), row / k % k, row % k);
                let plane = &input[(image * c + ch) * h * w..(image * c + ch + 1) * h * w];
                // Output columns whose input column is inside the image:
                // 0 <= ox·s + kx − left < w.
                let lo = pad.left.saturating_sub(kx).div_ceil(s);
                let hi = (w + pad.left).saturating_sub(kx).div_ceil(s).min(ow);
                if lo >= hi {
                    continue;
                }
                let first = lo * s + kx - pad.left;
                for (oy, dst_row) in dst.chunks_exact_mut(ow).enumerate() {
                    let Some(iy) = (oy * s + ky).checked_sub(pad.top).filter(|&iy| iy < h) else {
                        continue;
                    };
                    let src = &plane[iy * w + first..(iy + 1) * w];
                    let dst = &mut dst_row[lo..hi];
                    if s == 1 {
                        dst.copy_from_slice(&src[..hi - lo]);
                    } else {
                        for (d, &v) in dst.iter_mut().zip(src.iter().step_by(s)) {
                            *d = v;
                        }
                    }
                }
            }
        }
        Ok((CpuStorage::F32(cols), Shape::from((n, rows, oh * ow))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::test_util::{assert_close, ConvCase};
    use candle_core::Device;

    /// Our im2col convolution agrees with candle's.
    fn check(case: ConvCase) {
        let (c, o) = (3, 4);
        let (xs, weight) = (case.input(c), case.weight(o, c));
        let want = xs.conv2d(&weight, case.pad, case.stride, 1, 1).unwrap();
        let flat = weight.flatten_from(1).unwrap();
        let got = conv2d(&xs, &flat, case.kernel, case.stride, Pad::uniform(case.pad)).unwrap();
        assert_close(&got, &want, &format!("{case:?}"));
    }

    #[test]
    fn matches_candle_conv2d() {
        ConvCase::all().into_iter().for_each(check);
    }

    #[test]
    fn bias_and_prelu_in_place() {
        let dev = Device::Cpu;
        let xs = Tensor::new(&[[[-2f32, 1.0], [-4.0, 3.0]]], &dev).unwrap();
        let activation = Activation::PRelu(vec![0.5, 0.25]);
        bias_activation_in_place(&xs, &[1.0, 0.0], &activation).unwrap();
        let v = xs.to_vec3::<f32>().unwrap();
        assert_eq!(v, vec![vec![vec![-0.5, 2.0], vec![-1.0, 3.0]]]);
    }
}
