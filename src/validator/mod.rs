//! A mock CometBFT validator: it listens for signers as CometBFT's privval
//! listener does, asks them to sign what a validator signs height after
//! height, and verifies and records every signature it gets.
//!
//! One implementation serves every place that needs a validator outside
//! the simulation: `quorumkms validator-sim`, the drills' canary, the
//! demo, the benchmark and the integration tests.
//!
//! - [`mock`]: the listener and the [`MockValidator`] (CometBFT's
//!   connection handling and retries).
//! - [`consensus`]: votes and proposals as a validator builds them.
//! - [`script`]: what a validator asks for at one height.
//! - [`checker`]: the shared log of released signatures that counts
//!   conflicting ones.

pub mod checker;
pub mod consensus;
pub mod mock;
pub mod script;

pub use checker::{Checker, Released, Report};
pub use mock::{MockValidator, SignOutcome, SignerListener, ValidatorTiming};
pub use script::{DOUBLE_SIGN_STEP, produce_height};
