//! The privval protocol: framing, per-version messages and sign bytes.

pub mod canonical;
