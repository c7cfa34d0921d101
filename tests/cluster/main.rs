//! The Raft cluster in one process: real nodes over real gRPC on
//! 127.0.0.1, with a collector of every grant.

mod support;

mod conflicts;
mod failover;
mod floor;
mod happy;
mod identity;
mod minority;
mod rpc;
mod snapshot;
mod threshold;
mod tls;
mod transfer;
