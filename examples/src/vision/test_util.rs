//! Helpers for the vision module's unit tests.

use candle_core::{Device, Result, Shape, Tensor};

/// `sin(scale · i)` for `i = 0, 1, …` as a CPU tensor of `shape`: smooth,
/// deterministic test data.
pub fn sine(shape: impl Into<Shape>, scale: f64) -> Tensor {
    let shape = shape.into();
    Tensor::arange(0f32, shape.elem_count() as f32, &Device::Cpu)
        .and_then(|t| t.affine(scale, 0.0)?.sin()?.reshape(shape))
        .expect("test tensor")
}

/// The largest absolute difference between two tensors of the same shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
}

/// Asserts that `got` has the shape of `want` and is within `1e-4` of it
/// everywhere; `what` names the case in the failure message.
#[track_caller]
pub fn assert_close(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.dims(), want.dims(), "{what}");
    let diff = max_abs_diff(got, want).unwrap();
    assert!(diff < 1e-4, "{what}: max difference {diff}");
}

/// A square convolution to check: an `h × w` input, a `kernel × kernel`
/// filter moved by `stride`, `pad` zeros on every side.
#[derive(Debug, Clone, Copy)]
pub struct ConvCase {
    pub h: usize,
    pub w: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvCase {
    /// Odd and even sizes and kernels, strides 1 and 2, with and without
    /// padding.
    pub fn all() -> Vec<ConvCase> {
        let mut cases = Vec::new();
        for (h, w) in [(5, 5), (6, 6), (7, 9), (8, 8), (9, 7), (10, 11)] {
            for kernel in [2, 3, 5] {
                for stride in [1, 2] {
                    for pad in [0, kernel / 2] {
                        cases.push(ConvCase {
                            h,
                            w,
                            kernel,
                            stride,
                            pad,
                        });
                    }
                }
            }
        }
        cases
    }
    /// A batch of two `channels`-channel inputs.
    pub fn input(&self, channels: usize) -> Tensor {
        sine((2, channels, self.h, self.w), 1.0)
    }

    /// `(out, in, k, k)` filters.
    pub fn weight(&self, out_channels: usize, in_channels: usize) -> Tensor {
        sine((out_channels, in_channels, self.kernel, self.kernel), 0.7)
    }
}
