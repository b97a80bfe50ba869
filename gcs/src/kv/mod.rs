//! The etcd-like KV as pure logic: [`engine::apply`] turns a command and a
//! [`KvView`] of the current state into a response, mutations and events.

pub mod compare;
pub mod engine;
pub mod view;

#[cfg(test)]
mod mem;
#[cfg(test)]
mod tests;

pub use engine::{apply, range, Applied};
pub use view::{KvView, Mutation, Overlay, PendingWrites};
