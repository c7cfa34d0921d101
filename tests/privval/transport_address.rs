//! Validator address parsing and display: a table of good and bad inputs.

use std::path::PathBuf;

use quorumkms::transport::Address;

const ID: &str = "117c95c4fd7e636c38d303493302d2c271a39669";

fn id() -> [u8; 20] {
    let mut out = [0u8; 20];
    hex::decode_to_slice(ID, &mut out).expect("hex");
    out
}

fn tcp(peer_id: Option<[u8; 20]>, host: &str, port: u16) -> Address {
    Address::Tcp {
        peer_id,
        host: host.into(),
        port,
    }
}

#[test]
fn good_addresses() {
    let cases: Vec<(String, Address, String)> = vec![
        (
            format!("tcp://{ID}@10.0.0.1:26658"),
            tcp(Some(id()), "10.0.0.1", 26658),
            format!("tcp://{ID}@10.0.0.1:26658"),
        ),
        (
            format!("tcp://{}@validator.example.com:1234", ID.to_uppercase()),
            tcp(Some(id()), "validator.example.com", 1234),
            format!("tcp://{ID}@validator.example.com:1234"),
        ),
        (
            "tcp://127.0.0.1:26658".into(),
            tcp(None, "127.0.0.1", 26658),
            "tcp://127.0.0.1:26658".into(),
        ),
        (
            format!("tcp://{ID}@[::1]:26658"),
            tcp(Some(id()), "::1", 26658),
            format!("tcp://{ID}@[::1]:26658"),
        ),
        (
            "  tcp://localhost:65535\n".into(),
            tcp(None, "localhost", 65535),
            "tcp://localhost:65535".into(),
        ),
        (
            "unix:///var/run/privval.sock".into(),
            Address::Unix(PathBuf::from("/var/run/privval.sock")),
            "unix:///var/run/privval.sock".into(),
        ),
    ];
    for (input, expected, display) in cases {
        let parsed: Address = input
            .parse()
            .unwrap_or_else(|e| panic!("{input:?} should parse: {e}"));
        assert_eq!(parsed, expected, "{input:?}");
        assert_eq!(parsed.to_string(), display, "{input:?}");
        let again: Address = display.parse().expect("display parses back");
        assert_eq!(again, expected, "round trip of {input:?}");
    }
}

#[test]
fn bad_addresses() {
    let cases = [
        ("", "expected tcp://"),
        ("10.0.0.1:26658", "expected tcp://"),
        ("http://10.0.0.1:26658", "expected tcp://"),
        ("tcp://10.0.0.1", "missing port"),
        ("tcp://10.0.0.1:", "invalid port"),
        ("tcp://10.0.0.1:abc", "invalid port"),
        ("tcp://10.0.0.1:70000", "invalid port"),
        ("tcp://10.0.0.1:0", "port must not be 0"),
        ("tcp://:26658", "missing host"),
        ("tcp://abc@10.0.0.1:26658", "40 hex characters"),
        (
            "tcp://zz7c95c4fd7e636c38d303493302d2c271a39669@10.0.0.1:26658",
            "not hexadecimal",
        ),
        ("tcp://::1:26658", "IPv6 host must be in brackets"),
        ("tcp://[::1:26658", "unclosed '['"),
        ("tcp://[::1]", "missing port"),
        ("tcp://a@b@host:1", "40 hex characters"),
        ("unix://", "missing socket path"),
        ("unix://relative/path.sock", "must be absolute"),
    ];
    for (input, reason) in cases {
        let err = match input.parse::<Address>() {
            Ok(a) => panic!("{input:?} parsed as {a:?}"),
            Err(e) => e.to_string(),
        };
        let prefix = format!("invalid validator address {input:?}: ");
        assert!(err.starts_with(&prefix), "{input:?}: {err}");
        assert!(err.contains(reason), "{input:?}: {err} (wanted {reason:?})");
    }
}

#[test]
fn deserializes_from_a_config_string() {
    #[derive(serde::Deserialize)]
    struct Validator {
        addr: Address,
    }
    let v: Validator =
        serde_json::from_str(&format!("{{\"addr\": \"tcp://{ID}@1.2.3.4:5\"}}")).expect("parse");
    assert_eq!(v.addr, tcp(Some(id()), "1.2.3.4", 5));
    assert!(serde_json::from_str::<Validator>("{\"addr\": \"udp://x:1\"}").is_err());
}
