//! MTCNN face detection, following facenet-pytorch 2.6's `detect_face`:
//!
//! 1. an image pyramid, from `12 / min_face_size` down by `scale_factor`
//!    while the shorter side stays ≥ 12 pixels; each level resized with
//!    area interpolation (`F.interpolate(mode="area")`) and run through
//!    P-Net; cells scoring ≥ `thresholds[0]` become 12×12 proposals, kept by
//!    IoU NMS (0.5) per level, then 0.7 over all levels; regressed, squared;
//! 2. each proposal cropped from the image, resized to 24×24, scored by
//!    R-Net (> `thresholds[1]`), NMS 0.7, regressed, squared;
//! 3. the same at 48×48 with O-Net (> `thresholds[2]`), which also places
//!    five landmarks (eyes, nose, mouth corners); regressed, then NMS 0.7
//!    by intersection over the smaller box.
//!
//! Networks see `(x − 127.5) · 0.0078125` of 0–255 RGB.

mod boxes;
mod nets;

pub use nets::{ONet, ONetOutput, PNet, RNet};

use candle_core::{Device, Result, Tensor};
use candle_nn::VarBuilder;
use image::RgbImage;

use boxes::{crop_window, nms, regress, regress_proposal, square, Candidate, Overlap};

/// A detected face, in pixels of the input image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Face {
    /// `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
    /// O-Net's face probability.
    pub score: f32,
    /// `[x, y]` of the left eye, right eye, nose, left and right mouth
    /// corners (left and right as seen in the image).
    pub landmarks: [[f32; 2]; 5],
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Smallest face looked for, in pixels.
    pub min_face_size: f64,
    /// Ratio between pyramid levels.
    pub scale_factor: f64,
    /// Face-probability thresholds of P-Net, R-Net and O-Net.
    pub thresholds: [f32; 3],
}

impl Default for Config {
    /// facenet-pytorch's defaults.
    fn default() -> Self {
        Self {
            min_face_size: 20.0,
            scale_factor: 0.709,
            thresholds: [0.6, 0.7, 0.7],
        }
    }
}

impl Config {
    /// The pyramid's scales for an `h × w` image.
    pub fn scales(&self, h: usize, w: usize) -> Vec<f64> {
        let m = 12.0 / self.min_face_size;
        let mut min_side = h.min(w) as f64 * m;
        let mut scale = m;
        let mut scales = Vec::new();
        while min_side >= 12.0 {
            scales.push(scale);
            scale *= self.scale_factor;
            min_side *= self.scale_factor;
        }
        scales
    }
}

/// Crops per network call in stages 2 and 3.
const CROP_BATCH: usize = 256;

pub struct Mtcnn {
    pnet: PNet,
    rnet: RNet,
    onet: ONet,
    cfg: Config,
    device: Device,
}

impl Mtcnn {
    /// Loads the three networks from `pnet.*`, `rnet.*` and `onet.*`.
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        Ok(Self::new(
            PNet::load(vb.pp("pnet"))?,
            RNet::load(vb.pp("rnet"))?,
            ONet::load(vb.pp("onet"))?,
            cfg,
            vb.device(),
        ))
    }

    pub fn new(pnet: PNet, rnet: RNet, onet: ONet, cfg: &Config, device: &Device) -> Self {
        Self {
            pnet,
            rnet,
            onet,
            cfg: cfg.clone(),
            device: device.clone(),
        }
    }

    /// The faces in an RGB image, most confident first.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Face>> {
        let planes = Planes::from_rgb(image);
        let proposals = self.propose(&planes)?;
        let refined = self.refine(&planes, proposals)?;
        self.output(&planes, refined)
    }

    /// Stage 1: P-Net over the pyramid; squared proposals.
    fn propose(&self, image: &Planes) -> Result<Vec<Candidate>> {
        let [threshold, _, _] = self.cfg.thresholds;
        let mut all = Vec::new();
        for scale in self.cfg.scales(image.h, image.w) {
            let h = (image.h as f64 * scale + 1.0) as usize;
            let w = (image.w as f64 * scale + 1.0) as usize;
            let input = image.resize_area(h, w).to_input(&self.device)?;
            let (reg, face) = self.pnet.forward(&input)?;
            let reg = reg.squeeze(0)?.to_vec3::<f32>()?;
            let face = face.squeeze(0)?.to_vec2::<f32>()?;
            let scale = scale as f32;
            let mut level = Vec::new();
            for (y, row) in face.iter().enumerate() {
                for (x, &score) in row.iter().enumerate() {
                    if score < threshold {
                        continue;
                    }
                    let (bx, by) = (x as f32 * 2.0, y as f32 * 2.0);
                    level.push(Candidate {
                        bbox: [
                            ((bx + 1.0) / scale).floor(),
                            ((by + 1.0) / scale).floor(),
                            ((bx + 12.0) / scale).floor(),
                            ((by + 12.0) / scale).floor(),
                        ],
                        score,
                        reg: [reg[0][y][x], reg[1][y][x], reg[2][y][x], reg[3][y][x]],
                    });
                }
            }
            all.extend(nms(&level, 0.5, Overlap::Iou).into_iter().map(|i| level[i]));
        }
        Ok(squared_survivors(&all, regress_proposal))
    }

    /// Stage 2: R-Net on 24×24 crops; squared survivors.
    fn refine(&self, image: &Planes, proposals: Vec<Candidate>) -> Result<Vec<Candidate>> {
        let mut scored = Vec::new();
        self.for_each_crop_batch(image, proposals, 24, |chunk, input| {
            let (reg, face) = self.rnet.forward(input)?;
            let (reg, face) = (reg.to_vec2::<f32>()?, face.to_vec1::<f32>()?);
            for ((c, reg), score) in chunk.iter().zip(reg).zip(face) {
                if score > self.cfg.thresholds[1] {
                    scored.push(Candidate {
                        bbox: c.bbox,
                        score,
                        reg: [reg[0], reg[1], reg[2], reg[3]],
                    });
                }
            }
            Ok(())
        })?;
        Ok(squared_survivors(&scored, regress))
    }

    /// Stage 3: O-Net on 48×48 crops; boxes and landmarks.
    fn output(&self, image: &Planes, refined: Vec<Candidate>) -> Result<Vec<Face>> {
        let mut faces = Vec::new();
        self.for_each_crop_batch(image, refined, 48, |chunk, input| {
            let out = self.onet.forward(input)?;
            let reg = out.regression.to_vec2::<f32>()?;
            let points = out.landmarks.to_vec2::<f32>()?;
            let face = out.face.to_vec1::<f32>()?;
            for (i, c) in chunk.iter().enumerate() {
                let score = face[i];
                if score <= self.cfg.thresholds[2] {
                    continue;
                }
                let b = c.bbox;
                let (w, h) = (b[2] - b[0] + 1.0, b[3] - b[1] + 1.0);
                let p = &points[i];
                let landmarks =
                    std::array::from_fn(|k| [w * p[k] + b[0] - 1.0, h * p[k + 5] + b[1] - 1.0]);
                let r = &reg[i];
                faces.push(Face {
                    bbox: regress(b, [r[0], r[1], r[2], r[3]]),
                    score,
                    landmarks,
                });
            }
            Ok(())
        })?;
        let as_candidates: Vec<Candidate> = faces
            .iter()
            .map(|f| Candidate {
                bbox: f.bbox,
                score: f.score,
                reg: [0.0; 4],
            })
            .collect();
        Ok(nms(&as_candidates, 0.7, Overlap::Min)
            .into_iter()
            .map(|i| faces[i])
            .collect())
    }

    /// Crops `candidates` from `image` and resizes them to `side × side`,
    /// then calls `f` with each run of up to [`CROP_BATCH`] of them and their
    /// `(n, 3, side, side)` network input.
    fn for_each_crop_batch(
        &self,
        image: &Planes,
        candidates: Vec<Candidate>,
        side: usize,
        mut f: impl FnMut(&[Candidate], &Tensor) -> Result<()>,
    ) -> Result<()> {
        let (candidates, crops) = image.crops(candidates, side);
        for (chunk, crops) in candidates.chunks(CROP_BATCH).zip(crops.chunks(CROP_BATCH)) {
            f(chunk, &self.batch(crops, side)?)?;
        }
        Ok(())
    }

    /// `(n, 3, side, side)` of normalised crops.
    fn batch(&self, crops: &[Planes], side: usize) -> Result<Tensor> {
        let mut data = Vec::with_capacity(crops.len() * 3 * side * side);
        for crop in crops {
            data.extend(crop.data.iter().map(|&v| normalize(v)));
        }
        Tensor::from_vec(data, (crops.len(), 3, side, side), &self.device)
    }
}

/// The candidates that survive NMS (IoU 0.7), each box moved by `regress`
/// of its regression and squared.
fn squared_survivors(
    candidates: &[Candidate],
    regress: fn([f32; 4], [f32; 4]) -> [f32; 4],
) -> Vec<Candidate> {
    nms(candidates, 0.7, Overlap::Iou)
        .into_iter()
        .map(|i| Candidate {
            bbox: square(regress(candidates[i].bbox, candidates[i].reg)),
            ..candidates[i]
        })
        .collect()
}

fn normalize(v: f32) -> f32 {
    (v - 127.5) * 0.0078125
}

/// An image as three `h × w` planes of 0–255 floats.
#[derive(Debug, Clone)]
struct Planes {
    data: Vec<f32>,
    h: usize,
    w: usize,
}

impl Planes {
    fn from_rgb(image: &RgbImage) -> Self {
        let (w, h) = (image.width() as usize, image.height() as usize);
        let mut data = vec![0f32; 3 * h * w];
        for (i, pixel) in image.pixels().enumerate() {
            for c in 0..3 {
                data[c * h * w + i] = f32::from(pixel[c]);
            }
        }
        Self { data, h, w }
    }

    /// Rows `y0..y1`, columns `x0..x1`.
    fn crop(&self, [y0, y1, x0, x1]: [usize; 4]) -> Self {
        let (h, w) = (y1 - y0, x1 - x0);
        let mut data = Vec::with_capacity(3 * h * w);
        for c in 0..3 {
            for y in y0..y1 {
                let row = (c * self.h + y) * self.w;
                data.extend_from_slice(&self.data[row + x0..row + x1]);
            }
        }
        Self { data, h, w }
    }

    /// Area interpolation (PyTorch's adaptive average pooling): output
    /// pixel `i` averages input pixels `floor(i·in/out) .. ceil((i+1)·in/out)`.
    /// The average over a rectangle is separable: columns, then rows.
    fn resize_area(&self, h: usize, w: usize) -> Self {
        let windows = |input: usize, output: usize| -> Vec<(usize, usize)> {
            (0..output)
                .map(|i| (i * input / output, ((i + 1) * input).div_ceil(output)))
                .collect()
        };
        let (cols, rows) = (windows(self.w, w), windows(self.h, h));
        let mut narrow = vec![0f32; 3 * self.h * w];
        for (src, dst) in self.data.chunks(self.w).zip(narrow.chunks_mut(w)) {
            for (d, &(a, b)) in dst.iter_mut().zip(&cols) {
                *d = src[a..b].iter().sum::<f32>() / (b - a) as f32;
            }
        }
        let mut data = vec![0f32; 3 * h * w];
        for c in 0..3 {
            let src = &narrow[c * self.h * w..(c + 1) * self.h * w];
            let dst = &mut data[c * h * w..(c + 1) * h * w];
            for (y, &(a, b)) in rows.iter().enumerate() {
                let out = &mut dst[y * w..(y + 1) * w];
                for row in a..b {
                    for (o, &v) in out.iter_mut().zip(&src[row * w..(row + 1) * w]) {
                        *o += v;
                    }
                }
                let n = (b - a) as f32;
                out.iter_mut().for_each(|o| *o /= n);
            }
        }
        Self { data, h, w }
    }

    /// The boxes that still cover pixels, and their `side × side` crops.
    fn crops(&self, boxes: Vec<Candidate>, side: usize) -> (Vec<Candidate>, Vec<Planes>) {
        boxes
            .into_iter()
            .filter_map(|c| {
                let window = crop_window(c.bbox, self.w, self.h)?;
                Some((c, self.crop(window).resize_area(side, side)))
            })
            .unzip()
    }

    /// `(1, 3, h, w)`, normalised.
    fn to_input(&self, device: &Device) -> Result<Tensor> {
        let data: Vec<f32> = self.data.iter().map(|&v| normalize(v)).collect();
        Tensor::from_vec(data, (1, 3, self.h, self.w), device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyramid_of_a_512_image() {
        let scales = Config::default().scales(512, 512);
        assert_eq!(scales.len(), 10);
        assert!((scales[0] - 0.6).abs() < 1e-12);
        assert!((scales[1] - 0.6 * 0.709).abs() < 1e-12);
    }

    #[test]
    fn area_resize_averages_windows() {
        let planes = Planes {
            data: (0..3 * 4 * 4).map(|v| v as f32).collect(),
            h: 4,
            w: 4,
        };
        let half = planes.resize_area(2, 2);
        assert_eq!(&half.data[..4], &[2.5, 4.5, 10.5, 12.5]);
        // Upsampling repeats pixels.
        let double = planes.crop([0, 1, 0, 2]).resize_area(2, 4);
        assert_eq!(&double.data[..8], &[0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]);
        // 3 → 2: windows [0, 2) and [1, 3) overlap.
        let row = Planes {
            data: vec![0.0, 3.0, 6.0, 0.0, 3.0, 6.0, 0.0, 3.0, 6.0],
            h: 1,
            w: 3,
        };
        assert_eq!(&row.resize_area(1, 2).data[..2], &[1.5, 4.5]);
    }
}
