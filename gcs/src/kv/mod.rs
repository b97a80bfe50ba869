//! The etcd-like KV as pure logic: [`engine::apply`] turns a command and a
//! [`KvView`] of the current state into a response, mutations and events;
//! [`limits`] states the sizes a write and a read answer may have;
//! [`sessions`] decides which exactly-once sessions expire, and when.

pub mod compare;
pub mod engine;
pub mod limits;
pub mod sessions;
pub mod view;

#[cfg(test)]
mod mem;
#[cfg(test)]
mod tests;

pub use engine::{apply, range, Applied};
pub use limits::{check_write, MAX_VALUE_BYTES, MAX_WRITE_BYTES, RANGE_PAGE_BYTES};
pub use sessions::{SessionRetention, DEFAULT_SESSION_RETENTION, MIN_SESSION_RETENTION};
pub use view::{KvView, Mutation, Overlay, PendingWrites};
