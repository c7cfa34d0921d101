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
