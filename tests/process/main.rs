//! Clusters of real `quorumkms start` processes: signing through failover,
//! restarts, partitions and a full disk, operations (membership, TLS,
//! metrics, the status page), the chaos run, the drills and the demo.

mod support;

mod admin;
mod chaos;
mod concurrent;
mod demo;
mod disk;
mod drill;
mod failover;
mod happy;
mod metrics;
mod ownership;
mod partition;
mod restart;
mod status_page;
mod tls;
