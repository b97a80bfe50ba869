//! Turning a photo into a classifier's input tensor.
//!
//! As torchvision's ImageNet evaluation transform: resize so the shorter
//! side is 256 pixels (bilinear with antialiasing, the `image` crate's
//! `Triangle` filter, like PIL's), crop the central 224×224, scale to
//! `[0, 1]` and normalise each channel, laid out as `(1, 3, 224, 224)`.

use std::path::Path;

use candle_core::{Device, Tensor};
use image::imageops::FilterType;
use image::{DynamicImage, RgbImage};

use super::error::{Error, Result};

/// The side of the square a classifier sees.
pub const INPUT_SIZE: usize = 224;
/// The shorter side after resizing, before the center crop.
pub const RESIZE_TO: u32 = 256;

/// Per-channel `(x - mean) / std`, with `x` in `[0, 1]` (RGB order).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalization {
    /// The ImageNet statistics torchvision models are trained with.
    pub const IMAGENET: Self = Self {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };

    /// `(x·255 − 127) / 128`, roughly `[-1, 1]`: the input of TensorFlow's
    /// EfficientNet-Lite models.
    pub const SIGNED: Self = Self {
        mean: [127.0 / 255.0; 3],
        std: [128.0 / 255.0; 3],
    };
}

/// Decodes a JPEG or PNG file into RGB.
pub fn open_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_rgb(&bytes)
}

/// Decodes JPEG or PNG bytes into RGB.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage> {
    Ok(image::load_from_memory(bytes)?.to_rgb8())
}

/// Resizes the shorter side to [`RESIZE_TO`] and crops the central
/// [`INPUT_SIZE`] square.
pub fn resize_and_crop(image: &RgbImage) -> RgbImage {
    let (w, h) = image.dimensions();
    let scale = RESIZE_TO as f32 / w.min(h) as f32;
    let (nw, nh) = (
        ((w as f32 * scale).round() as u32).max(RESIZE_TO),
        ((h as f32 * scale).round() as u32).max(RESIZE_TO),
    );
    let resized = DynamicImage::ImageRgb8(image.clone()).resize_exact(nw, nh, FilterType::Triangle);
    let side = INPUT_SIZE as u32;
    resized
        .crop_imm((nw - side) / 2, (nh - side) / 2, side, side)
        .to_rgb8()
}

/// A `(1, 3, 224, 224)` normalised tensor of `image` (any size: it is
/// resized and center-cropped first).
pub fn to_input(image: &RgbImage, norm: Normalization, device: &Device) -> Result<Tensor> {
    let crop = resize_and_crop(image);
    Ok(normalized_chw(&crop, norm, device)?.unsqueeze(0)?)
}

/// `(3, h, w)` of an image as it is, normalised.
pub fn normalized_chw(
    image: &RgbImage,
    norm: Normalization,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let (w, h) = image.dimensions();
    let plane = (w * h) as usize;
    let mut data = vec![0f32; 3 * plane];
    for (i, pixel) in image.pixels().enumerate() {
        for c in 0..3 {
            data[c * plane + i] = (pixel[c] as f32 / 255.0 - norm.mean[c]) / norm.std[c];
        }
    }
    Tensor::from_vec(data, (3, h as usize, w as usize), device)
}

/// Stacks `(1, 3, H, W)` inputs into one `(n, 3, H, W)` batch.
pub fn batch(inputs: &[Tensor]) -> Result<Tensor> {
    Ok(Tensor::cat(inputs, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_nchw_and_normalised() {
        let image = RgbImage::from_pixel(300, 200, image::Rgb([255, 0, 128]));
        let t = to_input(&image, Normalization::IMAGENET, &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[1, 3, 224, 224]);
        let first: Vec<f32> = (0..3)
            .map(|c| {
                t.get(0)
                    .unwrap()
                    .get(c)
                    .unwrap()
                    .get(100)
                    .unwrap()
                    .get(100)
                    .unwrap()
            })
            .map(|v| v.to_scalar::<f32>().unwrap())
            .collect();
        let want = [
            (1.0 - 0.485) / 0.229,
            (0.0 - 0.456) / 0.224,
            (128.0 / 255.0 - 0.406) / 0.225,
        ];
        for (got, want) in first.iter().zip(want) {
            assert!((got - want).abs() < 1e-4, "{got} vs {want}");
        }
        let b = batch(&[t.clone(), t]).unwrap();
        assert_eq!(b.dims(), &[2, 3, 224, 224]);
    }

    #[test]
    fn crop_keeps_the_center() {
        let image = RgbImage::from_fn(512, 256, |x, _| {
            image::Rgb([if x < 256 { 0 } else { 255 }, 0, 0])
        });
        let crop = resize_and_crop(&image);
        assert_eq!(crop.dimensions(), (224, 224));
        assert_eq!(crop.get_pixel(0, 0)[0], 0);
        assert_eq!(crop.get_pixel(223, 0)[0], 255);
    }
}
