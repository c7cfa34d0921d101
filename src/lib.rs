//! quorumkms: a highly available remote signer for CometBFT validators.
//!
//! # Layout
//!
//! - [`watermark`]: the pure double-sign rules and the state file format.
//! - [`privval`]: the privval protocol (framing, messages, sign bytes).
//! - [`keys`]: key backends behind one trait.
//! - [`cluster`]: the Raft cluster that commits watermarks before signing.
//! - [`grant`]: the seam where a session asks to sign (single-node or Raft).

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod cluster;
pub mod grant;
pub mod keys;
pub mod privval;
pub mod watermark;
