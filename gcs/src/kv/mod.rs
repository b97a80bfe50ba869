//! The etcd-like KV as pure logic: [`engine::apply`] turns a command and a
//! [`KvView`] of the current state into a response, mutations and events;
//! [`limits`] states the sizes a write and a read answer may have.

pub mod compare;
pub mod engine;
pub mod limits;
pub mod view;

#[cfg(test)]
mod mem;
#[cfg(test)]
mod tests;

pub use engine::{apply, range, Applied};
pub use limits::{check_write, MAX_VALUE_BYTES, MAX_WRITE_BYTES, RANGE_PAGE_BYTES};
pub use view::{KvView, Mutation, Overlay, PendingWrites};
