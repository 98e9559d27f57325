//! postvault-module: the cryptographic module, the trust boundary of postvault.
//!
//! Every key, register and signature lives here (seed 002, "Cryptographic
//! module for secure processing of value-bearing items"; seed 001, the
//! Postage Server Cryptographic Module security policy). The module speaks a
//! typed command/response protocol ([`protocol`]) inside a secure session
//! ([`session`]); which command may run in which state for which role is one
//! table ([`table`]). It keeps its persistent state sealed in one file
//! ([`nvm`]), hands every audit entry to the host before replying
//! ([`audit_sink`]), and runs in-process or as a daemon ([`daemon`]) behind
//! the same [`client::ModuleClient`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access;
pub mod audit_sink;
pub mod checkpoint;
pub mod client;
pub mod daemon;
pub mod error;
pub mod keys;
pub mod module;
pub mod nvm;
pub mod protocol;
pub mod psd;
pub mod serde_hex;
pub mod session;
pub mod table;
pub mod types;
mod worker;

pub use client::{ClientError, ModuleClient};
pub use error::ModuleError;
pub use module::{Module, ModuleConfig};
pub use protocol::{Password, Reply, Request, Response};
pub use types::{Clock, ManualClock, ModuleState, Role};

/// Postcard encoding into a buffer of exactly the right size: no
/// reallocation copies the bytes around (nor leaves stray copies of a
/// plaintext behind in freed memory).
pub(crate) fn to_vec_exact<T: serde::Serialize + ?Sized>(value: &T) -> Vec<u8> {
    try_to_vec_exact(value).expect("encoding a value into a Vec cannot fail")
}

/// [`to_vec_exact`] reporting postcard's error instead of panicking.
pub(crate) fn try_to_vec_exact<T: serde::Serialize + ?Sized>(
    value: &T,
) -> postcard::Result<Vec<u8>> {
    let len = postcard::experimental::serialized_size(value)?;
    postcard::to_extend(value, Vec::with_capacity(len))
}
