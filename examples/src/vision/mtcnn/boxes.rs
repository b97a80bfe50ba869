//! Box arithmetic of facenet-pytorch's `detect_face`: non-maximum
//! suppression (torchvision's IoU flavour and the numpy "Min" flavour),
//! squaring (`rerec`), regression (`bbreg`) and clipping (`pad`).
//!
//! Boxes are `[x1, y1, x2, y2]` in pixels of the original image.

/// A box with its face score and the regression a network predicted for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub bbox: [f32; 4],
    pub score: f32,
    /// `[dx1, dy1, dx2, dy2]` in box widths/heights.
    pub reg: [f32; 4],
}

/// How [`nms`] measures overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// Intersection over union, areas as `(x2 − x1)·(y2 − y1)`
    /// (`torchvision.ops.nms`).
    Iou,
    /// Intersection over the smaller box, areas as `(x2 − x1 + 1)·(y2 − y1 + 1)`
    /// (facenet-pytorch's `nms_numpy(.., 'Min')`).
    Min,
}

/// Greedy non-maximum suppression: indices of the kept boxes, best first.
/// A box is dropped when it overlaps a kept one by more than `threshold`.
pub fn nms(boxes: &[Candidate], threshold: f32, overlap: Overlap) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&a, &b| boxes[b].score.total_cmp(&boxes[a].score));
    let one = if overlap == Overlap::Min { 1.0 } else { 0.0 };
    let area = |b: &[f32; 4]| (b[2] - b[0] + one) * (b[3] - b[1] + one);
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (rank, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        let a = &boxes[i].bbox;
        for &j in &order[rank + 1..] {
            if suppressed[j] {
                continue;
            }
            let b = &boxes[j].bbox;
            let iw = (a[2].min(b[2]) - a[0].max(b[0]) + one).max(0.0);
            let ih = (a[3].min(b[3]) - a[1].max(b[1]) + one).max(0.0);
            let inter = iw * ih;
            let ratio = match overlap {
                Overlap::Iou => inter / (area(a) + area(b) - inter),
                Overlap::Min => inter / area(a).min(area(b)),
            };
            if ratio > threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// Grows a box to a square around its center (`rerec`).
pub fn square(b: [f32; 4]) -> [f32; 4] {
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    let l = w.max(h);
    let x1 = b[0] + w * 0.5 - l * 0.5;
    let y1 = b[1] + h * 0.5 - l * 0.5;
    [x1, y1, x1 + l, y1 + l]
}

/// Applies a refinement network's regression, sizes counted inclusively
/// (`bbreg`).
pub fn regress(b: [f32; 4], reg: [f32; 4]) -> [f32; 4] {
    let w = b[2] - b[0] + 1.0;
    let h = b[3] - b[1] + 1.0;
    [
        b[0] + reg[0] * w,
        b[1] + reg[1] * h,
        b[2] + reg[2] * w,
        b[3] + reg[3] * h,
    ]
}

/// Applies P-Net's regression, sizes counted exclusively (the first stage
/// of `detect_face` does this inline).
pub fn regress_proposal(b: [f32; 4], reg: [f32; 4]) -> [f32; 4] {
    let w = b[2] - b[0];
    let h = b[3] - b[1];
    [
        b[0] + reg[0] * w,
        b[1] + reg[1] * h,
        b[2] + reg[2] * w,
        b[3] + reg[3] * h,
    ]
}

/// The pixel rows `y0..y1` and columns `x0..x1` a box covers, clipped to a
/// `width × height` image (`pad`: truncate, then `[x - 1, ex)`), or `None`
/// when nothing is left.
pub fn crop_window(b: [f32; 4], width: usize, height: usize) -> Option<[usize; 4]> {
    let x = (b[0].trunc() as i64).max(1);
    let y = (b[1].trunc() as i64).max(1);
    let ex = (b[2].trunc() as i64).min(width as i64);
    let ey = (b[3].trunc() as i64).min(height as i64);
    if ey > y - 1 && ex > x - 1 {
        Some([(y - 1) as usize, ey as usize, (x - 1) as usize, ex as usize])
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(bbox: [f32; 4], score: f32) -> Candidate {
        Candidate {
            bbox,
            score,
            reg: [0.0; 4],
        }
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let boxes = [
            cand([0.0, 0.0, 10.0, 10.0], 0.8),
            cand([1.0, 1.0, 11.0, 11.0], 0.9),
            cand([50.0, 50.0, 60.0, 60.0], 0.7),
        ];
        assert_eq!(nms(&boxes, 0.5, Overlap::Iou), vec![1, 2]);
        // IoU of the first two is 81/119 = 0.68: kept apart at 0.7.
        assert_eq!(nms(&boxes, 0.7, Overlap::Iou), vec![1, 0, 2]);
        // A box inside another is suppressed by "Min" whatever its size.
        let nested = [
            cand([0.0, 0.0, 99.0, 99.0], 0.9),
            cand([10.0, 10.0, 19.0, 19.0], 0.95),
        ];
        assert_eq!(nms(&nested, 0.7, Overlap::Min), vec![1]);
        assert_eq!(nms(&nested, 0.7, Overlap::Iou), vec![1, 0]);
    }

    #[test]
    fn square_and_regress() {
        assert_eq!(square([0.0, 0.0, 10.0, 20.0]), [-5.0, 0.0, 15.0, 20.0]);
        assert_eq!(
            regress([0.0, 0.0, 9.0, 9.0], [0.1, -0.1, 0.2, 0.0]),
            [1.0, -1.0, 11.0, 9.0]
        );
    }

    #[test]
    fn crop_window_clips_to_the_image() {
        assert_eq!(
            crop_window([-5.5, 2.7, 30.2, 40.0], 20, 30),
            Some([1, 30, 0, 20])
        );
        assert_eq!(crop_window([25.0, 2.0, 30.0, 9.0], 20, 30), None);
    }
}
