//! tmkms's state file format, read and written so an operator can move a
//! chain's watermark from tmkms to quorumkms and back.
//!
//! tmkms writes its `consensus::State` as JSON:
//!
//! ```json
//! {"height":"1234","round":"0","step":2,
//!  "block_id":{"hash":"26C0…","parts":{"total":1,"hash":"A1B2…"}}}
//! ```
//!
//! Height and round are decimal strings, `block_id` is `null` for nil or
//! unknown, hashes are upper-case hex, and `parts` may also be spelled
//! `part_set_header` (older files) with `total` as a number or a string.
//!
//! **tmkms numbers steps differently from CometBFT**: 0 proposal,
//! 1 prevote, 2 precommit. quorumkms (like CometBFT's FilePV) uses 1, 2, 3,
//! so a tmkms step `s` is our step `s + 1`. The empty state is height 0,
//! round 0, step 0.
//!
//! tmkms stores no sign bytes, so an imported tmkms watermark has none:
//! nothing can be signed again at exactly that position, only above it.
//! On export the block id is recovered from the stored sign bytes; without
//! them it is written as `null`.

use serde::{Deserialize, Serialize};

use super::inspect;
use super::{Position, SignState, Step};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Json {
    height: String,
    round: String,
    step: i8,
    #[serde(default)]
    block_id: Option<BlockIdJson>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockIdJson {
    hash: String,
    #[serde(rename = "parts", alias = "part_set_header")]
    parts: PartsJson,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartsJson {
    total: Total,
    hash: String,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Total {
    Number(u32),
    String(String),
}

/// A parsed tmkms state: our watermark, plus the block id tmkms recorded
/// (not kept: quorumkms compares sign bytes, not block ids).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TmkmsState {
    /// The watermark, without sign bytes.
    pub state: SignState,
    /// The block tmkms signed at that position, if any.
    pub block_id: Option<inspect::BlockId>,
}

fn hex_field(what: &str, text: &str) -> Result<Vec<u8>, String> {
    hex::decode(text).map_err(|e| format!("{what} {text:?} is not hex: {e}"))
}

/// Parses a tmkms state file.
///
/// # Errors
///
/// A reason when the JSON is malformed, a number is out of range or
/// negative, or the step is not one tmkms writes (0, 1 or 2).
pub fn parse(text: &str) -> Result<TmkmsState, String> {
    let json: Json = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let height: i64 = json
        .height
        .parse()
        .map_err(|_| format!("height {:?} is not a non-negative integer", json.height))?;
    let round: i32 = json
        .round
        .parse()
        .map_err(|_| format!("round {:?} is not a non-negative integer", json.round))?;
    if height < 0 || round < 0 {
        return Err("height and round must not be negative".into());
    }
    let step = match json.step {
        0 => Step::Propose,
        1 => Step::Prevote,
        2 => Step::Precommit,
        s => {
            return Err(format!(
                "step {s} is not a tmkms step (0 proposal, 1 prevote, 2 precommit)"
            ));
        }
    };
    let block_id = match json.block_id {
        None => None,
        Some(id) => {
            let parts_total = match id.parts.total {
                Total::Number(n) => n,
                Total::String(s) => s
                    .parse()
                    .map_err(|_| format!("block_id parts total {s:?} is not an integer"))?,
            };
            let id = inspect::BlockId {
                hash: hex_field("block_id hash", &id.hash)?,
                parts_total,
                parts_hash: hex_field("block_id parts hash", &id.parts.hash)?,
            };
            (!id.hash.is_empty()).then_some(id)
        }
    };
    let position = if height == 0 {
        if round != 0 || json.step != 0 {
            return Err("height 0 must have round 0 and step 0".into());
        }
        None
    } else {
        Some(Position {
            height,
            round,
            step,
        })
    };
    Ok(TmkmsState {
        state: SignState {
            position,
            ..SignState::default()
        },
        block_id,
    })
}

/// Renders a watermark as a tmkms state file.
///
/// # Errors
///
/// When the watermark's step has no tmkms number (a position at step 0).
pub fn render(state: &SignState) -> Result<String, String> {
    let json = match state.position {
        None => Json {
            height: "0".into(),
            round: "0".into(),
            step: 0,
            block_id: None,
        },
        Some(p) => {
            let step = match p.step {
                Step::Propose => 0,
                Step::Prevote => 1,
                Step::Precommit => 2,
                Step::None => return Err(format!("position {p} has no tmkms step")),
            };
            let block_id = inspect::signed(&state.sign_bytes)
                .and_then(|s| s.block_id)
                .map(|id| BlockIdJson {
                    hash: hex::encode_upper(id.hash),
                    parts: PartsJson {
                        total: Total::Number(id.parts_total),
                        hash: hex::encode_upper(id.parts_hash),
                    },
                });
            Json {
                height: p.height.to_string(),
                round: p.round.to_string(),
                step,
                block_id,
            }
        }
    };
    serde_json::to_string(&json).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state file exactly as tmkms writes it (compact JSON, upper-case
    /// hex, `parts`).
    const TMKMS_FILE: &str = r#"{"height":"12345","round":"1","step":2,"block_id":{"hash":"26C0A41F3243C6BCD7AD2DFF8A8D83A71D29D307B5326C227F734A1A512FE47D","parts":{"total":1,"hash":"2470A41F3243C6BCD7AD2DFF8A8D83A71D29D307B5326C227F734A1A512FE47D"}}}"#;

    #[test]
    fn reads_a_real_tmkms_file_with_its_step_numbering() {
        let t = parse(TMKMS_FILE).unwrap();
        assert_eq!(
            t.state.position,
            Some(Position {
                height: 12345,
                round: 1,
                step: Step::Precommit
            })
        );
        assert!(t.state.sign_bytes.is_empty());
        let id = t.block_id.unwrap();
        assert_eq!(id.parts_total, 1);
        assert_eq!(id.hash[0], 0x26);
        for (tmkms_step, ours) in [(0, Step::Propose), (1, Step::Prevote), (2, Step::Precommit)] {
            let text =
                format!(r#"{{"height":"5","round":"0","step":{tmkms_step},"block_id":null}}"#);
            assert_eq!(parse(&text).unwrap().state.position.unwrap().step, ours);
        }
    }

    #[test]
    fn reads_the_initial_state_and_old_spellings() {
        let t = parse(r#"{"height":"0","round":"0","step":0,"block_id":null}"#).unwrap();
        assert_eq!(t.state, SignState::default());
        let old = r#"{"height":"5","round":"1","step":6,"block_id":null}"#;
        assert!(parse(old).unwrap_err().contains("step 6"));
        let old = r#"{"height":"5","round":"1","step":1,"block_id":{"hash":"AB","part_set_header":{"total":"2","hash":"CD"}}}"#;
        assert_eq!(parse(old).unwrap().block_id.unwrap().parts_total, 2);
    }

    #[test]
    fn round_trips_and_recovers_the_block_id() {
        let bytes = inspect::tests::sign_bytes("c-1", 12345, 1, Step::Precommit, true);
        let state = SignState {
            position: Some(Position {
                height: 12345,
                round: 1,
                step: Step::Precommit,
            }),
            sign_bytes: bytes,
            ..SignState::default()
        };
        let text = render(&state).unwrap();
        assert!(
            text.contains(r#""height":"12345","round":"1","step":2"#),
            "{text}"
        );
        assert!(text.contains(&"AB".repeat(32)), "{text}");
        let back = parse(&text).unwrap();
        assert_eq!(back.state.position, state.position);
        assert_eq!(back.block_id.unwrap().hash, vec![0xab; 32]);
        // Without sign bytes the block id is unknown.
        let bare = SignState {
            sign_bytes: Vec::new(),
            ..state
        };
        assert!(render(&bare).unwrap().ends_with(r#""block_id":null}"#));
        let empty = render(&SignState::default()).unwrap();
        assert_eq!(
            empty,
            r#"{"height":"0","round":"0","step":0,"block_id":null}"#
        );
    }

    #[test]
    fn rejects_malformed_files() {
        for bad in [
            "",
            "[]",
            r#"{"height":5,"round":"0","step":0,"block_id":null}"#,
            r#"{"height":"-5","round":"0","step":0,"block_id":null}"#,
            r#"{"height":"5","round":"-1","step":0,"block_id":null}"#,
            r#"{"height":"5","round":"0","step":3,"block_id":null}"#,
            r#"{"height":"0","round":"0","step":2,"block_id":null}"#,
            r#"{"height":"5","round":"0","step":0,"block_id":{"hash":"XY","parts":{"total":1,"hash":""}}}"#,
            r#"{"height":"5","round":"0","step":0,"block_id":null,"extra":1}"#,
        ] {
            assert!(parse(bad).is_err(), "accepted {bad}");
        }
    }
}
