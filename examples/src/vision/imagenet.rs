//! The 1000 ImageNet-1k class labels, in class-index order, and top-k.
//!
//! The labels are torchvision's (`torchvision/models/_meta.py`,
//! `_IMAGENET_CATEGORIES`, torchvision 0.29.2, BSD-3-Clause): one short
//! name per class, e.g. 94 "hummingbird", 285 "Egyptian cat".

use candle_core::{Result, Tensor};

/// ImageNet-1k class labels, one per line in class-index order.
const LABELS: &str = include_str!("imagenet_classes.txt");

/// ImageNet-1k class labels: `CLASSES[i]` names class `i`.
pub static CLASSES: std::sync::LazyLock<[&'static str; 1000]> = std::sync::LazyLock::new(|| {
    let labels: Vec<&'static str> = LABELS.lines().collect();
    labels
        .try_into()
        .expect("imagenet_classes.txt has 1000 lines")
});

/// One class of a classifier's answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    pub class: usize,
    pub label: &'static str,
    pub score: f32,
}

/// The `k` most probable classes of one image's `(1000,)` (or `(1, 1000)`)
/// probabilities, most probable first.
pub fn top_k(probs: &Tensor, k: usize) -> Result<Vec<Prediction>> {
    let probs = probs.flatten_all()?.to_vec1::<f32>()?;
    if probs.len() != CLASSES.len() {
        candle_core::bail!(
            "top_k: expected {} ImageNet probabilities, got {}",
            CLASSES.len(),
            probs.len()
        )
    }
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    Ok(order
        .into_iter()
        .take(k)
        .map(|class| Prediction {
            class,
            label: CLASSES[class],
            score: probs[class],
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn known_labels() {
        assert_eq!(CLASSES[94], "hummingbird");
        assert_eq!(CLASSES[285], "Egyptian cat");
        assert_eq!(CLASSES[967], "espresso");
    }

    #[test]
    fn top_k_orders_by_score() {
        let mut p = vec![0f32; 1000];
        p[967] = 0.7;
        p[94] = 0.2;
        p[3] = 0.1;
        let top = top_k(&Tensor::new(p, &Device::Cpu).unwrap(), 2).unwrap();
        assert_eq!(top.len(), 2);
        assert_eq!((top[0].class, top[0].label), (967, "espresso"));
        assert_eq!((top[1].class, top[1].score), (94, 0.2));
    }
}
