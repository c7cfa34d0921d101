//! A signer node and what it serves a validator: privval across protocol
//! versions and transports, double-sign refusals, malformed input,
//! restarts, state migration, key backends, threshold share files and the
//! command line.

mod support;

mod cli_start;
mod doctor;
mod double_sign;
mod example_configs;
mod floor;
mod happy_path;
mod keys_cli;
mod keys_pkcs11;
mod keys_softsign;
mod keys_yubihsm;
mod malformed_input;
mod multi_chain;
mod restart;
mod state_migration;
mod threshold_cli;
mod transport_address;
mod transport_backoff;
mod transport_unix;
mod vectors;
