//! Command-line subcommands.

pub mod softsign;
pub mod yubihsm;
