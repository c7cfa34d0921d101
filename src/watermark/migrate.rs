//! Moving watermarks in and out: the three file formats behind one
//! interface, with format detection, for `quorumkms state import|export`.
//!
//! Every import is validated completely (sign bytes must be a canonical
//! vote or proposal for the chain at the stated position) before anything
//! is written, and is applied only through [`super::raise`], so it can never
//! lower a watermark.

use std::fmt;

use super::interchange::{self, ChainState};
use super::{SignState, inspect, state_file, tmkms};

/// A state file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Decide from the file's contents (import only).
    Auto,
    /// CometBFT's `priv_validator_state.json` (one chain).
    Cometbft,
    /// tmkms's state file (one chain).
    Tmkms,
    /// The quorumkms interchange format (any number of chains).
    Interchange,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Auto => "auto",
            Format::Cometbft => "cometbft",
            Format::Tmkms => "tmkms",
            Format::Interchange => "interchange",
        })
    }
}

/// Tells the formats apart.
///
/// An object with `version` is an interchange file; with `block_id`, a
/// tmkms file (tmkms always writes it, CometBFT never); with a numeric
/// `round`, `signbytes` or `signature`, a CometBFT file. A string round and
/// none of those is ambiguous, and the two formats number steps
/// differently, so that is an error asking for `--format`.
///
/// # Errors
///
/// Not JSON, not an object, or ambiguous.
pub fn detect(text: &str) -> Result<Format, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let object = value.as_object().ok_or("the file is not a JSON object")?;
    if object.contains_key("version") || object.contains_key("chains") {
        return Ok(Format::Interchange);
    }
    if object.contains_key("block_id") {
        return Ok(Format::Tmkms);
    }
    if object.contains_key("signbytes")
        || object.contains_key("signature")
        || object
            .get("round")
            .is_some_and(serde_json::Value::is_number)
    {
        return Ok(Format::Cometbft);
    }
    Err(
        "cannot tell whether this is a CometBFT or a tmkms state file (they number steps \
         differently); pass --format cometbft or --format tmkms"
            .into(),
    )
}

/// Parses `text` in `format` into chain states. Single-chain formats need
/// `chain_id`; for an interchange file it selects one chain (all when
/// `None`).
///
/// # Errors
///
/// A reason, naming the format; nothing has been changed anywhere.
pub fn parse(
    text: &str,
    format: Format,
    chain_id: Option<&str>,
) -> Result<Vec<ChainState>, String> {
    let format = match format {
        Format::Auto => detect(text)?,
        f => f,
    };
    let single = |state: SignState| -> Result<Vec<ChainState>, String> {
        let chain_id = chain_id.ok_or(format!("a {format} state file needs --chain"))?;
        inspect::check(chain_id, state.position, &state.sign_bytes)?;
        Ok(vec![ChainState {
            chain_id: chain_id.to_string(),
            public_key: None,
            state,
        }])
    };
    let result = match format {
        Format::Cometbft => state_file::parse(text).and_then(single),
        Format::Tmkms => tmkms::parse(text).and_then(|t| single(t.state)),
        Format::Interchange | Format::Auto => {
            interchange::parse(text).and_then(|chains| match chain_id {
                None => Ok(chains),
                Some(id) => {
                    let chain = chains
                        .into_iter()
                        .find(|c| c.chain_id == id)
                        .ok_or(format!("the file has no chain {id:?}"))?;
                    Ok(vec![chain])
                }
            })
        }
    };
    result.map_err(|e| format!("invalid {format} file: {e}"))
}

/// Renders chain states in `format`. Single-chain formats take exactly one.
///
/// # Errors
///
/// `auto`, several chains for a single-chain format, or a state the format
/// cannot express.
pub fn render(chains: &[ChainState], format: Format) -> Result<String, String> {
    let one = || match chains {
        [chain] => Ok(&chain.state),
        _ => Err(format!("the {format} format holds one chain; pass --chain")),
    };
    match format {
        Format::Auto => Err("choose an export format".into()),
        Format::Cometbft => Ok(state_file::render(&filepv_safe(one()?))),
        Format::Tmkms => tmkms::render(one()?),
        Format::Interchange => interchange::render(chains),
    }
}

/// `state` as CometBFT's FilePV can load it: sign bytes only with their
/// signature. FilePV panics on a repeat request at a position whose file
/// holds sign bytes but no signature, and a cluster keeps none (every node
/// re-derives it). Without sign bytes the next signer refuses that exact
/// position again, which is safe.
fn filepv_safe(state: &SignState) -> SignState {
    let mut state = state.clone();
    if state.signature.is_none() {
        state.sign_bytes.clear();
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watermark::{Position, Step};

    #[test]
    fn detects_each_format() {
        assert_eq!(
            detect(r#"{"height":"1","round":1,"step":1}"#).unwrap(),
            Format::Cometbft
        );
        assert_eq!(
            detect(r#"{"height":"1","round":"1","step":1,"signbytes":""}"#).unwrap(),
            Format::Cometbft
        );
        assert_eq!(
            detect(r#"{"height":"1","round":"1","step":1,"block_id":null}"#).unwrap(),
            Format::Tmkms
        );
        assert_eq!(
            detect(r#"{"version":1,"chains":[]}"#).unwrap(),
            Format::Interchange
        );
        assert!(
            detect(r#"{"height":"1","round":"1","step":1}"#)
                .unwrap_err()
                .contains("--format")
        );
        assert!(detect("[1]").is_err());
        assert!(detect("nope").is_err());
    }

    #[test]
    fn the_same_digits_mean_different_steps() {
        let cometbft = parse(
            r#"{"height":"1","round":1,"step":1}"#,
            Format::Auto,
            Some("c"),
        )
        .unwrap();
        assert_eq!(
            cometbft[0].state.position,
            Some(Position {
                height: 1,
                round: 1,
                step: Step::Propose
            })
        );
        let tmkms = parse(
            r#"{"height":"1","round":"1","step":1,"block_id":null}"#,
            Format::Auto,
            Some("c"),
        )
        .unwrap();
        assert_eq!(tmkms[0].state.position.unwrap().step, Step::Prevote);
    }

    #[test]
    fn single_chain_formats_need_a_chain_and_check_sign_bytes() {
        let text = r#"{"height":"1","round":1,"step":1}"#;
        assert!(
            parse(text, Format::Cometbft, None)
                .unwrap_err()
                .contains("--chain")
        );
        let wrong = r#"{"height":"1","round":1,"step":1,"signbytes":"0102"}"#;
        let err = parse(wrong, Format::Cometbft, Some("c")).unwrap_err();
        assert!(err.starts_with("invalid cometbft file"), "{err}");
    }

    /// A cluster's watermark for chain `c` at 9/0/prevote: sign bytes, no
    /// signature.
    fn cluster_watermark() -> ChainState {
        ChainState {
            chain_id: "c".into(),
            public_key: None,
            state: SignState {
                position: Some(Position {
                    height: 9,
                    round: 0,
                    step: Step::Prevote,
                }),
                sign_bytes: inspect::tests::sign_bytes("c", 9, 0, Step::Prevote, true),
                signature: None,
                owner: None,
            },
        }
    }

    #[test]
    fn exports_every_format_and_reads_it_back() {
        let chain = cluster_watermark();
        for format in [Format::Cometbft, Format::Tmkms, Format::Interchange] {
            let text = render(std::slice::from_ref(&chain), format).unwrap();
            let back = parse(&text, Format::Auto, Some("c")).unwrap();
            assert_eq!(back[0].state.position, chain.state.position, "{format}");
            if format == Format::Interchange {
                assert_eq!(back[0].state.sign_bytes, chain.state.sign_bytes, "{format}");
            }
        }
        let two = [chain.clone(), chain];
        assert!(render(&two, Format::Cometbft).is_err());
    }

    /// FilePV (CometBFT's `privval/file.go`) panics with "Signature is nil
    /// but SignBytes is not" on a repeat request at a position whose file
    /// holds sign bytes without a signature.
    fn filepv_accepts(text: &str) -> bool {
        let json: serde_json::Value = serde_json::from_str(text).unwrap();
        let present = |key: &str| {
            json.get(key)
                .and_then(|v| v.as_str())
                .is_some_and(|s| !s.is_empty())
        };
        !present("signbytes") || present("signature")
    }

    #[test]
    fn a_cometbft_export_never_holds_sign_bytes_without_a_signature() {
        let mut chain = cluster_watermark();
        let bytes = chain.state.sign_bytes.clone();
        let text = render(std::slice::from_ref(&chain), Format::Cometbft).unwrap();
        assert!(filepv_accepts(&text), "{text}");
        let back = parse(&text, Format::Cometbft, Some("c")).unwrap();
        assert_eq!(back[0].state.position, chain.state.position);
        assert!(back[0].state.sign_bytes.is_empty());
        // A single-node watermark keeps both.
        chain.state.signature = Some(vec![7; 64]);
        let text = render(std::slice::from_ref(&chain), Format::Cometbft).unwrap();
        assert!(filepv_accepts(&text), "{text}");
        let back = parse(&text, Format::Cometbft, Some("c")).unwrap();
        assert_eq!(back[0].state.sign_bytes, bytes);
        assert_eq!(back[0].state.signature, Some(vec![7; 64]));
    }
}
