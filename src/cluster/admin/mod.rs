//! The operator's API: what a node reports about itself and the cluster,
//! and the changes an operator makes. Served by the same tonic server as
//! the node-to-node service.
//!
//! - [`status`]: [`Status`], what `quorumkms cluster status` prints.
//! - [`service`]: the server side ([`AdminService`]).
//! - [`client`]: the operator's side ([`Client`]); [`error`]: its
//!   [`ClientError`].

pub mod client;
pub mod error;
pub mod service;
pub mod status;

pub use client::{Client, KnownLeader};
pub use error::ClientError;
pub use service::AdminService;
pub use status::{ChainStatus, LEADER_ADDR, MemberStatus, Status, ValidatorStatus};

/// Asks the node at `addr` (host:port, plaintext) to bootstrap the
/// cluster. Returns false when the cluster was already formed.
///
/// Kept only for `demo`'s loopback helpers until they call
/// [`Client::initialize_within`]; use [`Client::initialize`].
///
/// # Errors
///
/// The node is unreachable or refuses, as a message.
#[doc(hidden)]
pub async fn initialize(addr: &str, timeout: std::time::Duration) -> Result<bool, String> {
    Client::new(addr, timeout)
        .initialize()
        .await
        .map_err(|e| e.to_string())
}

/// Asks the node at `addr` (host:port, plaintext) for its status.
///
/// Kept only for `demo`'s loopback helpers until they call
/// [`Client::find_leader`]; use [`Client::status`].
///
/// # Errors
///
/// The node is unreachable or its answer does not decode, as a message.
#[doc(hidden)]
pub async fn status(addr: &str, timeout: std::time::Duration) -> Result<Status, String> {
    Client::new(addr, timeout)
        .status()
        .await
        .map_err(|e| e.to_string())
}
