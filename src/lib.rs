//! quorumkms: a highly available remote signer for CometBFT validators.
//!
//! # Layout
//!
//! - [`watermark`]: the pure double-sign rules and the state file format.
//! - [`privval`]: the privval protocol (framing, messages, sign bytes).
//! - [`transport`]: dialling validators (TCP + SecretConnection, Unix).
//! - [`keys`]: key backends behind one trait.
//! - [`grant`]: the seam where a session asks to sign (single-node or Raft).
//! - [`cluster`]: the Raft cluster that commits watermarks before signing.
//! - [`session`]: one validator connection, and the dial loop around it.
//! - [`config`]: quorumkms.toml, validated all at once.
//! - [`node`]: a running signer assembled from a config.
//! - [`metrics`]: Prometheus metrics, `/healthz` and `/readyz`.
//! - [`cli`]: command-line subcommands.
//! - [`validator`]: a mock CometBFT validator that checks every signature.
//! - [`testnet`]: node directories, ports and processes of a local network.
//! - [`demo`]: the local demo.
//! - [`drill`]: failover drills against a running cluster.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod drill;
#[doc(hidden)]
pub mod fuzzing;
pub mod grant;
pub mod keys;
pub mod metrics;
pub mod node;
pub mod privval;
pub mod session;
#[cfg(feature = "sim")]
pub mod sim;
pub mod testnet;
pub mod threshold;
pub mod transport;
pub mod validator;
pub mod watermark;
