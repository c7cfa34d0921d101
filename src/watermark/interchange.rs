//! The sign-state interchange format, version 1: every chain's watermark
//! with its sign bytes and the validator's public key, in one JSON file, so
//! double-sign protection can move between signers without losing
//! anything (in the spirit of Ethereum's EIP-3076 slashing-protection
//! interchange). docs/interchange.md is the operator's description.
//!
//! ```json
//! {
//!   "version": 1,
//!   "generator": "quorumkms 0.1.0",
//!   "chains": [
//!     {
//!       "chain_id": "cosmoshub-4",
//!       "pub_key": {"type": "tendermint/PubKeyEd25519", "value": "<base64>"},
//!       "watermark": {
//!         "height": "1234",
//!         "round": 0,
//!         "step": "precommit",
//!         "sign_bytes": "<hex>",
//!         "signature": "<base64>"
//!       }
//!     }
//!   ]
//! }
//! ```
//!
//! Conventions: heights are decimal strings (64-bit, as in CometBFT's
//! JSON), rounds are JSON numbers, steps are names (`proposal`, `prevote`,
//! `precommit`) so no numbering can be confused, sign bytes are hex (either
//! case read, upper case written, as CometBFT does), signatures and public
//! keys are standard base64 with padding. `watermark` is `null` before
//! anything was signed; `pub_key`, `sign_bytes` and `signature` may be
//! absent when unknown. Parsing is strict: unknown fields, an unknown
//! version, duplicate chains and any malformed value are errors.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use super::{Position, SignState, Step, inspect};

/// The format version this build reads and writes.
pub const VERSION: u32 = 1;

/// The `type` of an Ed25519 public key, as in `priv_validator_key.json`.
pub const ED25519_KEY_TYPE: &str = "tendermint/PubKeyEd25519";

/// The whole file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Always [`VERSION`].
    pub version: u32,
    /// What wrote the file (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<String>,
    /// One entry per chain, chain ids unique.
    pub chains: Vec<ChainJson>,
}

/// One chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainJson {
    /// The chain id.
    pub chain_id: String,
    /// The consensus public key, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pub_key: Option<PubKeyJson>,
    /// The last signed position, `null` when nothing was signed.
    pub watermark: Option<WatermarkJson>,
}

/// A public key, `{"type": "tendermint/PubKeyEd25519", "value": base64}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PubKeyJson {
    /// Key type; only [`ED25519_KEY_TYPE`].
    #[serde(rename = "type")]
    pub key_type: String,
    /// Base64 of the 32-byte key.
    pub value: String,
}

/// A watermark.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatermarkJson {
    /// Decimal height, at least 1.
    pub height: String,
    /// Round, at least 0.
    pub round: i64,
    /// `proposal`, `prevote` or `precommit`.
    pub step: StepName,
    /// Hex canonical sign bytes signed at this position, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_bytes: Option<String>,
    /// Base64 signature over `sign_bytes`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// A step by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepName {
    /// A block proposal.
    Proposal,
    /// A prevote.
    Prevote,
    /// A precommit.
    Precommit,
}

/// One chain's state, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainState {
    /// The chain id.
    pub chain_id: String,
    /// The Ed25519 consensus public key, when known.
    pub public_key: Option<[u8; 32]>,
    /// The watermark (owner is never carried).
    pub state: SignState,
}

/// Parses and validates an interchange file.
///
/// # Errors
///
/// A reason naming the offending chain and field: bad JSON, a missing or
/// unsupported `version`, unknown fields, wrong types, negative or
/// non-numeric heights, sign bytes that are not hex or not a canonical vote
/// or proposal at the stated position, duplicate chains.
pub fn parse(text: &str) -> Result<Vec<ChainState>, String> {
    // The version is read first, so a file from a future version gets a
    // version error rather than a complaint about a field it added.
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    match value.get("version") {
        None => return Err("not an interchange file: no \"version\" field".into()),
        Some(v) if v.as_u64() == Some(u64::from(VERSION)) => {}
        Some(v) => {
            return Err(format!(
                "unsupported interchange version {v} (this build reads version {VERSION})"
            ));
        }
    }
    let file: File = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let mut out: Vec<ChainState> = Vec::new();
    for chain in file.chains {
        let id = chain.chain_id.clone();
        if id.is_empty() {
            return Err("a chain has an empty chain_id".into());
        }
        if out.iter().any(|c| c.chain_id == id) {
            return Err(format!("chain {id:?} appears twice"));
        }
        let decoded = decode_chain(chain).map_err(|e| format!("chain {id:?}: {e}"))?;
        out.push(decoded);
    }
    Ok(out)
}

fn decode_chain(chain: ChainJson) -> Result<ChainState, String> {
    let public_key = match chain.pub_key {
        None => None,
        Some(key) => {
            if key.key_type != ED25519_KEY_TYPE {
                return Err(format!(
                    "pub_key type {:?} is not {ED25519_KEY_TYPE:?}",
                    key.key_type
                ));
            }
            let bytes = BASE64
                .decode(&key.value)
                .map_err(|e| format!("pub_key value is not base64: {e}"))?;
            Some(
                <[u8; 32]>::try_from(bytes.as_slice())
                    .map_err(|_| format!("pub_key is {} bytes, not 32", bytes.len()))?,
            )
        }
    };
    let state = match chain.watermark {
        None => SignState::default(),
        Some(w) => {
            let height: i64 = w
                .height
                .parse()
                .map_err(|_| format!("height {:?} is not a decimal integer", w.height))?;
            if height < 1 {
                return Err(format!(
                    "height {height} must be at least 1 (use \"watermark\": null for nothing signed)"
                ));
            }
            let round = i32::try_from(w.round)
                .ok()
                .filter(|r| *r >= 0)
                .ok_or_else(|| format!("round {} is negative or too large", w.round))?;
            let step = match w.step {
                StepName::Proposal => Step::Propose,
                StepName::Prevote => Step::Prevote,
                StepName::Precommit => Step::Precommit,
            };
            let sign_bytes = match w.sign_bytes.as_deref() {
                None | Some("") => Vec::new(),
                Some(h) => hex::decode(h).map_err(|e| format!("sign_bytes are not hex: {e}"))?,
            };
            let signature = match w.signature.as_deref() {
                None | Some("") => None,
                Some(b) => Some(
                    BASE64
                        .decode(b)
                        .map_err(|e| format!("signature is not base64: {e}"))?,
                ),
            };
            if signature.is_some() && sign_bytes.is_empty() {
                return Err("a signature without sign_bytes".into());
            }
            SignState {
                position: Some(Position {
                    height,
                    round,
                    step,
                }),
                sign_bytes,
                signature,
                owner: None,
            }
        }
    };
    inspect::check(&chain.chain_id, state.position, &state.sign_bytes)?;
    Ok(ChainState {
        chain_id: chain.chain_id,
        public_key,
        state,
    })
}

/// Renders chains as an interchange file (pretty JSON, chains in the given
/// order).
///
/// # Errors
///
/// A watermark at step 0, which no signer writes.
pub fn render(chains: &[ChainState]) -> Result<String, String> {
    let mut file = File {
        version: VERSION,
        generator: Some(format!("quorumkms {}", env!("CARGO_PKG_VERSION"))),
        chains: Vec::new(),
    };
    for chain in chains {
        let watermark = match chain.state.position {
            None => None,
            Some(p) => Some(WatermarkJson {
                height: p.height.to_string(),
                round: i64::from(p.round),
                step: match p.step {
                    Step::Propose => StepName::Proposal,
                    Step::Prevote => StepName::Prevote,
                    Step::Precommit => StepName::Precommit,
                    Step::None => {
                        return Err(format!(
                            "chain {:?}: position {p} has no step",
                            chain.chain_id
                        ));
                    }
                },
                sign_bytes: (!chain.state.sign_bytes.is_empty())
                    .then(|| hex::encode_upper(&chain.state.sign_bytes)),
                signature: chain.state.signature.as_ref().map(|s| BASE64.encode(s)),
            }),
        };
        file.chains.push(ChainJson {
            chain_id: chain.chain_id.clone(),
            pub_key: chain.public_key.map(|k| PubKeyJson {
                key_type: ED25519_KEY_TYPE.into(),
                value: BASE64.encode(k),
            }),
            watermark,
        });
    }
    serde_json::to_string_pretty(&file).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watermark::inspect::tests::sign_bytes;

    fn sample() -> Vec<ChainState> {
        let bytes = sign_bytes("cosmoshub-4", 1234, 0, Step::Precommit, true);
        vec![
            ChainState {
                chain_id: "cosmoshub-4".into(),
                public_key: Some([7; 32]),
                state: SignState {
                    position: Some(Position {
                        height: 1234,
                        round: 0,
                        step: Step::Precommit,
                    }),
                    sign_bytes: bytes,
                    signature: Some(vec![1; 64]),
                    owner: None,
                },
            },
            ChainState {
                chain_id: "osmosis-1".into(),
                public_key: None,
                state: SignState::default(),
            },
        ]
    }

    #[test]
    fn round_trips() {
        let chains = sample();
        let text = render(&chains).unwrap();
        assert!(text.contains("\"version\": 1"), "{text}");
        assert!(text.contains("\"height\": \"1234\""), "{text}");
        assert!(text.contains("\"step\": \"precommit\""), "{text}");
        assert!(text.contains("\"watermark\": null"), "{text}");
        assert!(text.contains(ED25519_KEY_TYPE), "{text}");
        assert_eq!(parse(&text).unwrap(), chains);
    }

    #[test]
    fn reads_a_minimal_hand_written_file() {
        let text = r#"{"version":1,"chains":[{"chain_id":"c-1",
            "watermark":{"height":"5","round":2,"step":"prevote"}}]}"#;
        let chains = parse(text).unwrap();
        assert_eq!(
            chains[0].state.position,
            Some(Position {
                height: 5,
                round: 2,
                step: Step::Prevote
            })
        );
        assert!(chains[0].state.sign_bytes.is_empty());
        // Lower-case hex is read.
        let bytes = hex::encode(sign_bytes("c-1", 5, 2, Step::Prevote, false));
        let text = format!(
            r#"{{"version":1,"chains":[{{"chain_id":"c-1","watermark":{{"height":"5","round":2,"step":"prevote","sign_bytes":"{bytes}"}}}}]}}"#
        );
        assert_eq!(parse(&text).unwrap()[0].state.position.unwrap().height, 5);
    }

    #[test]
    fn rejects_malformed_files() {
        let good_bytes = hex::encode(sign_bytes("c", 5, 0, Step::Prevote, true));
        let w = |body: &str| {
            format!(r#"{{"version":1,"chains":[{{"chain_id":"c","watermark":{body}}}]}}"#)
        };
        let cases: Vec<(String, &str)> = vec![
            ("{".into(), "EOF"),
            ("[]".into(), "no \"version\""),
            (r#"{"chains":[]}"#.into(), "no \"version\""),
            (r#"{"version":2,"chains":[]}"#.into(), "unsupported interchange version 2"),
            (r#"{"version":"1","chains":[]}"#.into(), "unsupported interchange version"),
            (r#"{"version":1,"chains":[],"extra":true}"#.into(), "unknown field"),
            (r#"{"version":1}"#.into(), "missing field `chains`"),
            (w(r#"{"height":5,"round":0,"step":"prevote"}"#), "invalid type"),
            (w(r#"{"height":"-5","round":0,"step":"prevote"}"#), "at least 1"),
            (w(r#"{"height":"0","round":0,"step":"prevote"}"#), "at least 1"),
            (w(r#"{"height":"x","round":0,"step":"prevote"}"#), "not a decimal"),
            (w(r#"{"height":"5","round":-1,"step":"prevote"}"#), "negative"),
            (w(r#"{"height":"5","round":0,"step":2}"#), "invalid type"),
            (w(r#"{"height":"5","round":0,"step":"vote"}"#), "unknown variant"),
            (w(r#"{"height":"5","round":0,"step":"prevote","sign_bytes":"zz"}"#), "not hex"),
            (w(r#"{"height":"5","round":0,"step":"prevote","sign_bytes":"0102"}"#), "canonical"),
            (
                w(&format!(r#"{{"height":"6","round":0,"step":"prevote","sign_bytes":"{good_bytes}"}}"#)),
                "but the watermark says",
            ),
            (w(r#"{"height":"5","round":0,"step":"prevote","signature":"!!"}"#), "base64"),
            (w(r#"{"height":"5","round":0,"step":"prevote","owner":"x"}"#), "unknown field"),
            (
                r#"{"version":1,"chains":[{"chain_id":"c","watermark":null},{"chain_id":"c","watermark":null}]}"#.into(),
                "appears twice",
            ),
            (
                r#"{"version":1,"chains":[{"chain_id":"c","watermark":null,"pub_key":{"type":"x","value":""}}]}"#.into(),
                "pub_key type",
            ),
            (
                r#"{"version":1,"chains":[{"chain_id":"c","watermark":null,"pub_key":{"type":"tendermint/PubKeyEd25519","value":"AAAA"}}]}"#.into(),
                "not 32",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(&text).expect_err(&text);
            assert!(err.contains(expected), "{text}: {err}");
        }
        // The good bytes themselves are accepted.
        let ok = w(&format!(
            r#"{{"height":"5","round":0,"step":"prevote","sign_bytes":"{good_bytes}"}}"#
        ));
        assert!(parse(&ok).is_ok());
    }
}
