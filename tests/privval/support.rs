//! Shared set-up for the signer tests: a single signer node as a real
//! process (the built binary) against the mock validator.

use std::path::{Path, PathBuf};

use quorumkms::keys::PublicKey;
use quorumkms::privval::{Proposal, Version, Vote};
use quorumkms::testnet::{self, CHAIN_ID, NodeFiles};
use quorumkms::validator::{Checker, MockValidator, SignOutcome, SignerListener, consensus};
use tokio::process::Child;

#[path = "../support/timing.rs"]
mod timing;
pub use timing::fast_timing;

/// The binary under test.
pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_quorumkms"))
}

/// A single-node signer and the validator it serves.
pub struct Single {
    /// Kept for its drop, which removes the directory.
    _dir: tempfile::TempDir,
    pub node: NodeFiles,
    pub child: Option<Child>,
    pub validator: MockValidator,
    pub checker: Checker,
    pub public_key: PublicKey,
    pub address: Vec<u8>,
    pub version: Version,
    /// Added to the node's environment on every (re)start.
    pub env: Vec<(String, String)>,
}

/// The consensus key of a [`Single`] node, when not the default soft key.
pub struct KeySetup {
    /// The key the validator expects.
    pub public_key: PublicKey,
    /// Replaces the node's `[[providers.softsign]]` section (`chain_ids`
    /// is the test chain's).
    pub providers: String,
    /// The node's extra environment.
    pub env: Vec<(String, String)>,
}

pub enum Transport {
    Tcp,
    Unix,
}

impl Single {
    /// Starts one signer node dialling a fresh simulated validator.
    pub async fn start(version: Version, transport: Transport) -> Single {
        Single::start_with(version, transport, "").await
    }

    /// Like `start`, with `extra` lines appended to the `[[chain]]` table.
    pub async fn start_with(version: Version, transport: Transport, chain_extra: &str) -> Single {
        Single::start_keyed(version, transport, chain_extra, None).await
    }

    /// Like `start_with`, signing with the key `key` sets up.
    pub async fn start_keyed(
        version: Version,
        transport: Transport,
        chain_extra: &str,
        key: Option<KeySetup>,
    ) -> Single {
        let dir = tempfile::tempdir().expect("tempdir");
        let listen = match transport {
            Transport::Tcp => SignerListener::tcp("127.0.0.1:0").await.expect("bind"),
            Transport::Unix => {
                SignerListener::unix(dir.path().join("validator.sock")).expect("bind")
            }
        };
        let seed = [42u8; 32];
        let mut public_key = PublicKey::Ed25519(
            ed25519_dalek::SigningKey::from_bytes(&seed)
                .verifying_key()
                .to_bytes(),
        );
        let nodes = testnet::write_nodes(
            dir.path(),
            1,
            seed,
            &[listen.signer_addr()],
            version,
            &|_| String::new(),
        )
        .expect("write node files");
        let node = nodes.into_iter().next().expect("one node");
        if !chain_extra.is_empty() {
            let mut text = std::fs::read_to_string(&node.config).expect("config");
            // The extra lines may choose the chain's floor themselves.
            if chain_extra.contains("floor") {
                text = text.replacen("floor = \"none\"\n", "", 1);
            }
            let text = text.replacen("state_file = ", &format!("{chain_extra}\nstate_file = "), 1);
            std::fs::write(&node.config, text).expect("config");
        }
        let mut env = Vec::new();
        if let Some(key) = key {
            let text = std::fs::read_to_string(&node.config).expect("config");
            let soft = format!(
                "[[providers.softsign]]\nchain_ids = [\"{CHAIN_ID}\"]\npath = \"secrets/consensus.key\"\n"
            );
            assert!(text.contains(&soft), "unexpected config layout:\n{text}");
            std::fs::write(&node.config, text.replacen(&soft, &key.providers, 1)).expect("config");
            public_key = key.public_key;
            env = key.env;
        }
        let checker = Checker::new();
        let validator = MockValidator::new(
            listen,
            CHAIN_ID,
            version,
            public_key,
            fast_timing(),
            checker.clone(),
        );
        let child =
            testnet::spawn_node_with_env(&exe(), &node, None, &env, &[]).expect("spawn node");
        Single {
            _dir: dir,
            node,
            child: Some(child),
            validator,
            checker,
            public_key,
            address: consensus::address(&public_key),
            version,
            env,
        }
    }

    /// kill -9 the node and wait for it to die.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        self.validator.drop_connection();
    }

    /// Starts the node again from its files.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "node still running");
        self.child = Some(
            testnet::spawn_node_with_env(&exe(), &self.node, None, &self.env, &[])
                .expect("respawn"),
        );
    }

    pub fn prevote(&self, height: i64, round: i32, variant: u8, offset_ms: i64) -> Vote {
        let block = consensus::block_id(height, variant);
        consensus::vote(
            self.version,
            false,
            height,
            round,
            Some(block),
            &self.address,
            offset_ms,
        )
    }

    pub fn precommit(&self, height: i64, round: i32, block: Option<u8>, offset_ms: i64) -> Vote {
        let block = block.map(|v| consensus::block_id(height, v));
        consensus::vote(
            self.version,
            true,
            height,
            round,
            block,
            &self.address,
            offset_ms,
        )
    }

    pub fn proposal(&self, height: i64, round: i32, variant: u8, offset_ms: i64) -> Proposal {
        consensus::proposal(
            height,
            round,
            consensus::block_id(height, variant),
            offset_ms,
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.node.dir.join("node.log")).unwrap_or_default()
    }
}

/// Runs the binary to completion with `args`, returning (success, stderr).
pub fn run_cli(args: &[&str], cwd: &Path) -> (bool, String, String) {
    let out = std::process::Command::new(exe())
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run quorumkms");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts that `outcome` is a privval error with `expected_code` whose
/// description contains `text`.
pub fn refused_with(outcome: &SignOutcome, expected_code: i32, text: &str) {
    match outcome {
        SignOutcome::Refused(e) => {
            assert_eq!(e.code, expected_code, "{e:?}");
            assert!(e.description.contains(text), "{e:?} lacks {text:?}");
        }
        other => panic!("expected a refusal ({text}), got {other:?}"),
    }
}
