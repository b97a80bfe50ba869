//! The load a run drives: open-loop HTTP ([`http`]) through a small
//! hyper client ([`client`]), and recorded GCS operations ([`gcs`]).

pub mod client;
pub mod gcs;
pub mod http;
