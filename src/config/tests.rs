//! Config parsing and validation: every broken field is named.

use super::*;

const GOOD: &str = r#"
[[chain]]
id = "cosmoshub-4"
state_file = "state/cosmoshub-4.json"
max_height = 100

[[validator]]
chain_id = "cosmoshub-4"
addr = "tcp://f88883b673fc69d7869cab098de3bafc2ff76eb8@127.0.0.1:26658"
secret_key = "secrets/kms-identity.key"
protocol_version = "v0.37"

[[validator]]
chain_id = "cosmoshub-4"
addr = "unix:///tmp/val.sock"

[[providers.softsign]]
chain_ids = ["cosmoshub-4"]
path = "secrets/cosmoshub-4-consensus.key"
"#;

fn problems(text: &str) -> Vec<String> {
    match parse(text) {
        Err(e) => vec![e],
        Ok(config) => config.validate().err().unwrap_or_default(),
    }
}

#[test]
fn a_good_config_validates_with_defaults() {
    let config = parse(GOOD).unwrap();
    assert_eq!(config.validate(), Ok(()));
    let v = &config.validator[1];
    assert_eq!(v.protocol_version, Version::V0_38);
    assert!(v.reconnect);
    assert_eq!(v.max_frame_bytes, crate::privval::codec::DEFAULT_MAX_FRAME);
    assert_eq!(v.handshake_timeout_ms, 86_400_000);
    assert_eq!(config.validator[0].protocol_version, Version::V0_37);
    assert!(config.chain[0].height_ownership);
    assert!(config.cluster.is_none());
}

#[test]
fn the_generated_config_validates() {
    let text = crate::cli::init::render(&["cosmoshub-4".into(), "osmosis-1".into()]);
    assert_eq!(parse(&text).unwrap().validate(), Ok(()));
}

#[test]
fn unknown_keys_are_named() {
    let p = problems(&GOOD.replace("max_height = 100", "max_hieght = 100"));
    assert_eq!(p.len(), 1);
    assert!(p[0].contains("max_hieght"), "{p:?}");
}

#[test]
fn every_broken_field_is_reported_at_once() {
    let bad = GOOD
        .replace("max_height = 100", "max_height = -5")
        .replace(
            "tcp://f88883b673fc69d7869cab098de3bafc2ff76eb8@127.0.0.1:26658",
            "http://nowhere",
        )
        .replace(
            "unix:///tmp/val.sock\"",
            "unix:///tmp/val.sock\"\nchain_id_typo = 1",
        );
    // The typo is a parse error; fix it and see the rest together.
    let p = problems(&bad);
    assert_eq!(p.len(), 1, "{p:?}");
    let bad = bad.replace("\nchain_id_typo = 1", "");
    let p = problems(&bad);
    assert!(
        p.iter().any(|p| p.starts_with("chain[0].max_height")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|p| p.starts_with("validator[0].addr")),
        "{p:?}"
    );
}

#[test]
fn references_must_resolve() {
    let p = problems(&GOOD.replace(
        "chain_ids = [\"cosmoshub-4\"]",
        "chain_ids = [\"osmosis-1\"]",
    ));
    assert!(
        p.iter()
            .any(|p| p.contains("no [[chain]] has id \"osmosis-1\"")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|p| p.contains("chain \"cosmoshub-4\" has no key")),
        "{p:?}"
    );
    let p = problems(&GOOD.replace(
        "chain_id = \"cosmoshub-4\"\naddr = \"unix",
        "chain_id = \"other\"\naddr = \"unix",
    ));
    assert!(
        p.iter().any(|p| p.starts_with("validator[1].chain_id")),
        "{p:?}"
    );
}

#[test]
fn tcp_needs_an_identity_key_and_bad_versions_are_refused() {
    let p = problems(&GOOD.replace("secret_key = \"secrets/kms-identity.key\"\n", ""));
    assert!(
        p.iter().any(|p| p.starts_with("validator[0].secret_key")),
        "{p:?}"
    );
    let p = problems(&GOOD.replace("\"v0.37\"", "\"v0.99\""));
    assert_eq!(p.len(), 1);
    assert!(p[0].contains("v0.99"), "{p:?}");
}

#[test]
fn duplicate_chains_and_empty_configs_are_refused() {
    assert!(
        problems("")
            .iter()
            .any(|p| p.contains("at least one chain"))
    );
    let twice = format!("{GOOD}\n[[chain]]\nid = \"cosmoshub-4\"\nstate_file = \"x.json\"\n");
    assert!(problems(&twice).iter().any(|p| p.contains("listed twice")));
}

#[test]
fn load_resolves_paths_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quorumkms.toml");
    std::fs::write(&path, GOOD).unwrap();
    let config = load(&path).unwrap();
    assert_eq!(
        config.chain[0].state_file,
        dir.path().join("state/cosmoshub-4.json")
    );
    assert_eq!(
        config.providers.softsign[0].path,
        dir.path().join("secrets/cosmoshub-4-consensus.key")
    );
    std::fs::write(&path, GOOD.replace("max_height = 100", "max_height = 0")).unwrap();
    let err = load(&path).unwrap_err().to_string();
    assert!(
        err.contains(&path.display().to_string()) && err.contains("chain[0].max_height"),
        "{err}"
    );
    let missing = load(&dir.path().join("nope.toml")).unwrap_err().to_string();
    assert!(missing.contains("cannot read"), "{missing}");
}

#[test]
fn metrics_and_cluster_tls_parse_and_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{GOOD}\n[cluster]\nnode_id = 1\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"raft\"\n\
         peers = [{{ id = 1, addr = \"127.0.0.1:7001\" }}]\n\
         tls = {{ ca = \"certs/ca.pem\", cert = \"certs/node-1.pem\", key = \"certs/node-1.key\", \
         revoked = [\"1f:2e\"], crl = \"certs/crl.pem\" }}\n\n\
         [metrics]\nlisten = \"127.0.0.1:9100\"\n"
    );
    let path = dir.path().join("quorumkms.toml");
    std::fs::write(&path, text).unwrap();
    let config = load(&path).unwrap();
    let tls = config.cluster.unwrap().tls.unwrap();
    assert_eq!(tls.ca, dir.path().join("certs/ca.pem"));
    assert_eq!(tls.key, dir.path().join("certs/node-1.key"));
    assert_eq!(tls.crl, Some(dir.path().join("certs/crl.pem")));
    assert_eq!(tls.revoked, ["1f:2e"]);
    assert_eq!(config.metrics.unwrap().listen, "127.0.0.1:9100");
}

#[test]
fn a_bad_metrics_address_is_named() {
    let p = problems(&format!("{GOOD}\n[metrics]\nlisten = \"localhost\"\n"));
    assert!(p.iter().any(|p| p.starts_with("metrics.listen")), "{p:?}");
    let p = problems(&format!("{GOOD}\n[metrics]\nport = 1\n"));
    assert!(p.iter().any(|p| p.contains("port")), "{p:?}");
}

/// The `[[validator]]` entries of `GOOD`'s chain, one per `(addr, name)`.
fn with_validators(entries: &[(&str, Option<&str>)]) -> String {
    let mut text = String::from(
        "[[chain]]\nid = \"cosmoshub-4\"\nstate_file = \"s.json\"\n\n\
         [[providers.softsign]]\nchain_ids = [\"cosmoshub-4\"]\npath = \"k\"\n",
    );
    for (addr, name) in entries {
        text.push_str(&format!(
            "\n[[validator]]\nchain_id = \"cosmoshub-4\"\naddr = \"{addr}\"\nsecret_key = \"id.key\"\n"
        ));
        if let Some(name) = name {
            text.push_str(&format!("name = \"{name}\"\n"));
        }
    }
    text
}

#[test]
fn a_validator_node_owns_heights_under_one_name_however_its_address_is_spelled() {
    // Two signer nodes dial the same validator node by different host
    // names and with the node id in another case.
    let id = "f88883b673fc69d7869cab098de3bafc2ff76eb8";
    let one = parse(&with_validators(&[(
        &format!("tcp://{id}@sentry-a:26659"),
        None,
    )]))
    .unwrap();
    let two = parse(&with_validators(&[(
        &format!("tcp://{}@10.0.0.5:26659", id.to_uppercase()),
        None,
    )]))
    .unwrap();
    assert_eq!(one.validator[0].owner_name(), id);
    assert_eq!(two.validator[0].owner_name(), id);

    // A configured name wins; without a node id the address is the name.
    let named = parse(&with_validators(&[(
        "tcp://10.0.0.5:26659",
        Some("val-east"),
    )]))
    .unwrap();
    assert_eq!(named.validator[0].owner_name(), "val-east");
    let unix = parse(&with_validators(&[("unix:///run/v.sock", None)])).unwrap();
    assert_eq!(unix.validator[0].owner_name(), "unix:///run/v.sock");
}

#[test]
fn one_name_for_two_validator_addresses_is_refused() {
    let found = problems(&with_validators(&[
        ("tcp://10.0.0.5:26659", Some("val")),
        ("tcp://10.0.0.6:26659", Some("val")),
    ]));
    assert!(
        found
            .iter()
            .any(|p| p.contains("validator[1]") && p.contains("already names")),
        "{found:?}"
    );
    let id = "f88883b673fc69d7869cab098de3bafc2ff76eb8";
    let found = problems(&with_validators(&[
        (&format!("tcp://{id}@a:26659"), None),
        (&format!("tcp://{id}@b:26659"), None),
    ]));
    assert!(
        found.iter().any(|p| p.contains("already names")),
        "{found:?}"
    );
    let found = problems(&with_validators(&[("tcp://10.0.0.5:26659", Some("  "))]));
    assert!(
        found.iter().any(|p| p.contains("name: must not be empty")),
        "{found:?}"
    );
    // Distinct names for distinct nodes are fine.
    assert_eq!(
        problems(&with_validators(&[
            ("tcp://10.0.0.5:26659", Some("a")),
            ("tcp://10.0.0.6:26659", Some("b")),
        ])),
        Vec::<String>::new()
    );
}

#[test]
fn the_handshake_deadline_is_configurable_within_bounds() {
    let with = |ms: &str| {
        GOOD.replace(
            "protocol_version = \"v0.37\"",
            &format!("protocol_version = \"v0.37\"\nhandshake_timeout_ms = {ms}"),
        )
    };
    let config = parse(&with("30_000")).unwrap();
    assert_eq!(config.validate(), Ok(()));
    assert_eq!(config.validator[0].handshake_timeout_ms, 30_000);
    for bad in ["0", "99", "604_800_001"] {
        let p = problems(&with(bad));
        assert_eq!(p.len(), 1, "{bad}: {p:?}");
        assert!(
            p[0].starts_with("validator[0].handshake_timeout_ms:"),
            "{p:?}"
        );
    }
}

#[test]
fn a_chains_floor_is_one_of_three_choices_or_unset() {
    let with = |lines: &str| GOOD.replace("max_height = 100", lines);
    let floor = |lines: &str| parse(&with(lines)).unwrap().chain[0].floor();
    assert_eq!(parse(GOOD).unwrap().chain[0].floor(), Ok(Floor::Unset));
    assert_eq!(floor("floor = \"none\""), Ok(Floor::None));
    assert_eq!(floor("floor = \"first-request\""), Ok(Floor::FirstRequest));
    let rpc = floor("floor = \"rpc\"\nfloor_rpc = [\"http://10.0.0.5:26657\", \"http://s:80\"]");
    assert!(matches!(rpc, Ok(Floor::Rpc(urls)) if urls.len() == 2));

    for (lines, named) in [
        ("floor = \"rpc\"", "floor_rpc"),
        (
            "floor = \"rpc\"\nfloor_rpc = [\"https://10.0.0.5:26657\"]",
            "https",
        ),
        (
            "floor = \"none\"\nfloor_rpc = [\"http://10.0.0.5:26657\"]",
            "floor_rpc",
        ),
        ("floor_rpc = [\"http://10.0.0.5:26657\"]", "floor_rpc"),
    ] {
        let p = problems(&with(lines));
        assert_eq!(p.len(), 1, "{lines}: {p:?}");
        assert!(
            p[0].starts_with("chain[0].") && p[0].contains(named),
            "{p:?}"
        );
    }
    let p = problems(&with("floor = \"latest\""));
    assert!(p[0].contains("floor"), "{p:?}");
}

#[test]
fn a_secp256k1_key_needs_v1_validators() {
    let secp = GOOD.replace(
        "path = \"secrets/cosmoshub-4-consensus.key\"",
        "path = \"secrets/cosmoshub-4-consensus.key\"\nkey_type = \"secp256k1\"",
    );
    let p = problems(&secp);
    // Both validators (v0.37 and the default v0.38) are named.
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].starts_with("validator[0].protocol_version"), "{p:?}");
    assert!(p[0].contains("secp256k1") && p[0].contains("v1.0"), "{p:?}");
    let v1 = secp
        .replace(
            "protocol_version = \"v0.37\"",
            "protocol_version = \"v1.0\"",
        )
        .replace(
            "addr = \"unix:///tmp/val.sock\"",
            "addr = \"unix:///tmp/val.sock\"\nprotocol_version = \"v1.0\"",
        );
    assert_eq!(problems(&v1), Vec::<String>::new());
    let p = problems(&GOOD.replace(
        "path = \"secrets/cosmoshub-4-consensus.key\"",
        "path = \"k\"\nkey_type = \"rsa\"",
    ));
    assert!(p[0].contains("key_type") || p[0].contains("rsa"), "{p:?}");
}

const PKCS11: &str = r#"
[[chain]]
id = "c-1"
state_file = "state/c-1.json"

[[validator]]
chain_id = "c-1"
addr = "unix:///tmp/val.sock"
protocol_version = "v1.0"

[[providers.pkcs11]]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "validators"
pin_file = "secrets/pin"

[[providers.pkcs11.keys]]
chain_ids = ["c-1"]
label = "c-1 consensus"
key_type = "secp256k1"
"#;

#[test]
fn pkcs11_sections_validate() {
    let config = parse(PKCS11).unwrap();
    assert_eq!(config.validate(), Ok(()));
    let p11 = &config.providers.pkcs11[0];
    assert_eq!(p11.sessions, 4);
    assert_eq!(p11.keys[0].key_type, KeyType::Secp256k1);

    let p = problems(&PKCS11.replace("token_label = \"validators\"\n", ""));
    assert!(p[0].contains("providers.pkcs11[0].token_label"), "{p:?}");
    let p = problems(&PKCS11.replace(
        "token_label = \"validators\"",
        "token_label = \"validators\"\nslot = 3",
    ));
    assert!(p[0].contains("not both"), "{p:?}");
    let p = problems(&PKCS11.replace("label = \"c-1 consensus\"", "id = \"zz\""));
    assert!(p[0].contains("keys[0].id"), "{p:?}");
    let p = problems(&PKCS11.replace("label = \"c-1 consensus\"", "label = \"a\"\nid = \"01\""));
    assert!(p[0].contains("label or id, not both"), "{p:?}");
    let twice = format!(
        "{PKCS11}\n[[providers.pkcs11]]\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\nslot = 1\n\
         pin_file = \"p\"\nkeys = []\n"
    );
    let p = problems(&twice);
    assert!(
        p.iter()
            .any(|p| p.starts_with("providers.pkcs11[1].module")
                && p.contains("one section per module")),
        "{p:?}"
    );
    let p = problems(&PKCS11.replace(
        "protocol_version = \"v1.0\"",
        "protocol_version = \"v0.38\"",
    ));
    assert!(
        p[0].contains("validator[0].protocol_version")
            && p[0].contains("providers.pkcs11[0].keys[0]"),
        "{p:?}"
    );
}

#[test]
fn pkcs11_paths_resolve_against_the_config() {
    let mut config = parse(&PKCS11.replace(
        "module = \"/usr/lib/softhsm/libsofthsm2.so\"",
        "module = \"libvendor.so\"",
    ))
    .unwrap();
    config.resolve_paths(Path::new("/etc/quorumkms"));
    let p11 = &config.providers.pkcs11[0];
    assert_eq!(p11.pin_file, Path::new("/etc/quorumkms/secrets/pin"));
    // A bare library name is the dynamic loader's to find.
    assert_eq!(p11.module, Path::new("libvendor.so"));
}

#[test]
fn init_writes_a_valid_config_for_every_backend_and_key_type() {
    use crate::cli::init::{KeyBackend, KeyPlan, render_with};
    let chains = ["cosmoshub-4".to_string(), "osmosis-1".to_string()];
    for backend in [KeyBackend::Soft, KeyBackend::Yubihsm, KeyBackend::Pkcs11] {
        for key_type in [KeyType::Ed25519, KeyType::Secp256k1] {
            let plan = KeyPlan {
                backend,
                key_type,
                ..KeyPlan::default()
            };
            let text = render_with(&chains, &plan);
            let config =
                parse(&text).unwrap_or_else(|e| panic!("{backend:?} {key_type}: {e}\n{text}"));
            assert_eq!(config.validate(), Ok(()), "{backend:?} {key_type}:\n{text}");
            match backend {
                KeyBackend::Soft => {
                    assert_eq!(config.providers.softsign.len(), 2);
                    assert_eq!(config.providers.softsign[1].key_type, key_type);
                }
                KeyBackend::Yubihsm => {
                    assert_eq!(config.providers.yubihsm[0].keys.len(), 2);
                    assert_eq!(config.providers.yubihsm[0].keys[1].key_type, key_type);
                }
                KeyBackend::Pkcs11 => {
                    assert_eq!(config.providers.pkcs11[0].keys.len(), 2);
                    assert_eq!(config.providers.pkcs11[0].keys[0].key_type, key_type);
                }
            }
            if key_type == KeyType::Secp256k1 {
                assert!(
                    config
                        .validator
                        .iter()
                        .all(|v| v.protocol_version == Version::V1_0)
                );
            }
        }
    }
}
