//! Combining the classifiers' answers, and the answer's JSON. Pure.

use serde::Serialize;

use crate::vision::CLASSES;

/// One class with its probability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scored {
    pub label: &'static str,
    pub class: usize,
    pub score: f32,
}

/// The `k` most probable classes, most probable first.
pub fn top_k(probs: &[f32], k: usize) -> Vec<Scored> {
    let mut order: Vec<usize> = (0..probs.len().min(CLASSES.len())).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|class| Scored {
            label: CLASSES[class],
            class,
            score: probs[class],
        })
        .collect()
}

/// The element-wise mean of several models' probabilities (an empty
/// list gives an empty mean). Every vector must have the same length.
pub fn average(probabilities: &[&[f32]]) -> Result<Vec<f32>, String> {
    let Some(first) = probabilities.first() else {
        return Ok(Vec::new());
    };
    if let Some(bad) = probabilities.iter().find(|p| p.len() != first.len()) {
        return Err(format!(
            "the models disagree on the number of classes: {} and {}",
            first.len(),
            bad.len()
        ));
    }
    let n = probabilities.len() as f32;
    Ok((0..first.len())
        .map(|i| probabilities.iter().map(|p| p[i]).sum::<f32>() / n)
        .collect())
}

/// Maps a box found on a downscaled copy back to the original's pixels.
pub fn scale_box(bbox: [f32; 4], scale: f32) -> [f32; 4] {
    bbox.map(|v| v * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_and_ranks() {
        let mut a = vec![0.0; 1000];
        let mut b = vec![0.0; 1000];
        a[94] = 0.9;
        a[285] = 0.1;
        b[94] = 0.5;
        b[285] = 0.5;
        let mean = average(&[&a, &b]).unwrap();
        assert!((mean[94] - 0.7).abs() < 1e-6);
        let top = top_k(&mean, 2);
        assert_eq!(top[0].label, "hummingbird");
        assert_eq!(top[1].class, 285);
        assert!(average(&[&a, &b[..10]]).is_err());
        assert_eq!(scale_box([1.0, 2.0, 3.0, 4.0], 2.0), [2.0, 4.0, 6.0, 8.0]);
    }

    #[test]
    fn ties_rank_by_class() {
        let top = top_k(&vec![0.001; 1000], 3);
        assert_eq!(top.iter().map(|s| s.class).collect::<Vec<_>>(), [0, 1, 2]);
    }
}
