//! The load a run drives: open-loop HTTP ([`http`]) through a small
//! hyper client ([`client`]), recorded GCS operations ([`gcs`]), and calls
//! to named actors that restart ([`actor`]).

pub mod actor;
pub mod client;
pub mod gcs;
pub mod http;
