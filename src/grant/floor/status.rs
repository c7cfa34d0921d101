//! Reading a CometBFT RPC `/status` answer: the node's latest block
//! height, its network (the chain id) and whether it is catching up.
//!
//! Every CometBFT version from v0.34 to v1.0 answers a GET of `/status`
//! with a JSON-RPC envelope `{"jsonrpc", "id", "result"}` whose
//! `result.sync_info.latest_block_height` is a decimal string; a bare
//! `result` object (as some proxies serve it) and a number are accepted
//! too. Anything else is an error, never a guess.

use serde_json::Value;

/// What a node's `/status` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// `sync_info.latest_block_height`.
    pub latest_height: i64,
    /// `node_info.network`: the chain id, when given.
    pub network: Option<String>,
    /// `sync_info.catching_up`: its latest height is not the chain's.
    pub catching_up: bool,
}

/// Why a `/status` answer cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    /// Not JSON.
    #[error("not JSON: {0}")]
    Json(String),
    /// A JSON-RPC error answer.
    #[error("the node answered an error: {0}")]
    Rpc(String),
    /// No `sync_info.latest_block_height`.
    #[error("no sync_info.latest_block_height in the answer")]
    NoHeight,
    /// A height that is not a non-negative integer.
    #[error("latest_block_height {0} is not a non-negative integer")]
    BadHeight(String),
}

/// Parses a `/status` answer.
///
/// # Errors
///
/// The first problem found.
pub fn parse(body: &[u8]) -> Result<NodeStatus, StatusError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| StatusError::Json(e.to_string()))?;
    if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
        return Err(StatusError::Rpc(short(error)));
    }
    let result = value.get("result").unwrap_or(&value);
    let sync = result.get("sync_info").ok_or(StatusError::NoHeight)?;
    let height = sync
        .get("latest_block_height")
        .ok_or(StatusError::NoHeight)?;
    let latest_height = match height {
        Value::String(text) => text.trim().parse::<i64>().ok(),
        Value::Number(number) => number.as_i64(),
        _ => None,
    }
    .filter(|h| *h >= 0)
    .ok_or_else(|| StatusError::BadHeight(short(height)))?;
    Ok(NodeStatus {
        latest_height,
        network: result
            .get("node_info")
            .and_then(|n| n.get("network"))
            .and_then(Value::as_str)
            .map(str::to_string),
        catching_up: sync
            .get("catching_up")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// A value as JSON, cut short for a log line.
fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(120) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `/status` answer in the envelope every version uses, with the
    /// fields each version adds around the ones read here.
    fn answer(version: &str, extra_sync: &str, height: &str) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","id":-1,"result":{{
              "node_info":{{"protocol_version":{{"p2p":"8","block":"11","app":"0"}},
                "id":"b77488f9fa23715979fe03cfc19fd4f3b3750347","listen_addr":"tcp://0.0.0.0:26656",
                "network":"cosmoshub-4","version":"{version}","channels":"40202122233038606100",
                "moniker":"node","other":{{"tx_index":"on","rpc_address":"tcp://0.0.0.0:26657"}}}},
              "sync_info":{{"latest_block_hash":"2512729BF836B206CB443BF3329A4130984B2D60E6198064A59EF1396AE6C1FD",
                "latest_app_hash":"7F06","latest_block_height":{height},
                "latest_block_time":"2024-06-11T14:07:57.12519517Z",{extra_sync}
                "catching_up":false}},
              "validator_info":{{"address":"AB","pub_key":{{"type":"tendermint/PubKeyEd25519","value":"AA=="}},
                "voting_power":"10"}}}}}}"#
        )
    }

    #[test]
    fn every_versions_status_reads() {
        let earliest = r#""earliest_block_hash":"30FD","earliest_app_hash":"E3B0",
            "earliest_block_height":"1","earliest_block_time":"2024-06-05T14:26:30.9Z","#;
        for (version, extra) in [
            ("0.34.29", ""),
            ("0.37.4", earliest),
            ("0.38.6", earliest),
            ("1.0.0", earliest),
        ] {
            let status = parse(answer(version, extra, r#""1000""#).as_bytes()).expect(version);
            assert_eq!(
                status,
                NodeStatus {
                    latest_height: 1000,
                    network: Some("cosmoshub-4".into()),
                    catching_up: false,
                },
                "{version}"
            );
        }
        // A bare result, a numeric height, no node_info.
        let bare = r#"{"sync_info":{"latest_block_height":42,"catching_up":true}}"#;
        assert_eq!(
            parse(bare.as_bytes()),
            Ok(NodeStatus {
                latest_height: 42,
                network: None,
                catching_up: true,
            })
        );
    }

    #[test]
    fn bad_answers_are_errors() {
        assert!(matches!(
            parse(b"<html>502</html>"),
            Err(StatusError::Json(_))
        ));
        assert!(matches!(parse(b""), Err(StatusError::Json(_))));
        assert!(matches!(
            parse(br#"{"jsonrpc":"2.0","id":-1,"result":{"sync_info":{"latest_block_height":"10""#),
            Err(StatusError::Json(_))
        ));
        let error =
            br#"{"jsonrpc":"2.0","id":-1,"error":{"code":-32603,"message":"Internal error"}}"#;
        assert!(matches!(parse(error), Err(StatusError::Rpc(_))));
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":-1,"result":{}}"#),
            Err(StatusError::NoHeight)
        );
        assert_eq!(parse(b"[]"), Err(StatusError::NoHeight));
        for height in [
            r#""-5""#,
            "-5",
            r#""abc""#,
            r#""""#,
            "1.5",
            "null",
            r#""99999999999999999999""#,
            "true",
        ] {
            let text = answer("0.38.6", "", height);
            assert!(
                matches!(parse(text.as_bytes()), Err(StatusError::BadHeight(_))),
                "{height}"
            );
        }
    }
}
