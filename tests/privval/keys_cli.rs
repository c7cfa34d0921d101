//! `quorumkms softsign` and `quorumkms yubihsm` subcommands, called
//! through their `run` functions (yubihsm against the mock HSM).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use clap::Parser;
use quorumkms::cli::softsign::{self, Command};
use quorumkms::cli::yubihsm::{self as hsm_cli, KeysCommand};
use quorumkms::keys::softsign::SoftSigner;
use quorumkms::keys::{ConsensusSigner, KeyType};

const FIXTURE: &str = "tests/privval/fixtures/priv_validator_key.json";
const VECTOR_PUB_HEX: &str = "f26bf4b2a2e84ceb7a53c3f1ae77408779b20064782fbadbdf0e365959ee4534";
const VECTOR_PUB_B64: &str = "8mv0sqLoTOt6U8PxrndAh3myAGR4L7rb3w42WVnuRTQ=";

fn run(cmd: Command) -> Result<String, String> {
    let mut out = Vec::new();
    softsign::run_with_output(&cmd, &mut out).map_err(|e| e.to_string())?;
    Ok(String::from_utf8(out).expect("utf-8 output"))
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

/// A parser wrapping the subcommand enums, as the top-level CLI will.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Top,
}

#[derive(clap::Subcommand)]
enum Top {
    #[command(subcommand)]
    Softsign(Command),
    Yubihsm(hsm_cli::Args),
}

#[test]
fn keygen_writes_0600_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("consensus.key");
    let out = run(Command::Keygen {
        key_type: KeyType::Ed25519,
        path: path.clone(),
        force: false,
    })
    .expect("keygen");
    assert_eq!(mode(&path), 0o600);
    let signer = SoftSigner::load(&path).expect("load");
    assert!(out.contains(&hex::encode(signer.public_key())), "{out}");

    let err = run(Command::Keygen {
        key_type: KeyType::Ed25519,
        path: path.clone(),
        force: false,
    })
    .expect_err("second keygen must refuse");
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        SoftSigner::load(&path).expect("load").public_key(),
        signer.public_key(),
        "the key was not replaced"
    );

    run(Command::Keygen {
        key_type: KeyType::Ed25519,
        path: path.clone(),
        force: true,
    })
    .expect("keygen --force");
    assert_ne!(
        SoftSigner::load(&path).expect("load").public_key(),
        signer.public_key()
    );
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn import_then_pubkey_prints_hex_and_base64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("imported.key");
    let out = run(Command::Import {
        input: FIXTURE.into(),
        output: key.clone(),
        force: false,
    })
    .expect("import");
    assert!(out.contains(VECTOR_PUB_HEX), "{out}");
    assert_eq!(mode(&key), 0o600);

    let out = run(Command::Pubkey {
        path: key.clone(),
        key_type: KeyType::Ed25519,
    })
    .expect("pubkey");
    assert!(out.contains(VECTOR_PUB_HEX), "{out}");
    assert!(out.contains(VECTOR_PUB_B64), "{out}");
    assert!(
        out.contains("AD7DAE5FEC609CF02F9BDE7D81D0C3CD66141563"),
        "{out}"
    );
    assert!(!out.contains("skHD"), "no secret in output: {out}");

    let err = run(Command::Import {
        input: FIXTURE.into(),
        output: key,
        force: false,
    })
    .expect_err("refuses to overwrite");
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn world_readable_key_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("open.key");
    run(Command::Keygen {
        key_type: KeyType::Ed25519,
        path: path.clone(),
        force: false,
    })
    .expect("keygen");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = run(Command::Pubkey {
        path: path.clone(),
        key_type: KeyType::Ed25519,
    })
    .expect_err("refused");
    assert!(err.contains("chmod 600"), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
}

#[test]
fn softsign_arguments_parse() {
    let cli = Cli::try_parse_from(["quorumkms", "softsign", "keygen", "/tmp/k", "--force"])
        .expect("parse");
    assert!(matches!(
        cli.cmd,
        Top::Softsign(Command::Keygen { force: true, .. })
    ));
    let cli = Cli::try_parse_from(["quorumkms", "softsign", "import", "pv.json", "out.key"])
        .expect("parse");
    assert!(matches!(cli.cmd, Top::Softsign(Command::Import { .. })));
    assert!(Cli::try_parse_from(["quorumkms", "softsign", "import", "pv.json"]).is_err());
}

#[test]
fn yubihsm_arguments_parse() {
    let cli = Cli::try_parse_from([
        "quorumkms",
        "yubihsm",
        "--http",
        "127.0.0.1:12345",
        "--auth-key-id",
        "2",
        "--password-file",
        "/etc/pw",
        "keys",
        "import",
        "7",
        "--path",
        "pv.json",
    ])
    .expect("parse");
    let Top::Yubihsm(args) = cli.cmd else {
        panic!("not yubihsm")
    };
    assert_eq!(args.connection.auth_key_id, 2);
    assert_eq!(
        args.connection.connector().expect("connector"),
        quorumkms::keys::yubihsm::Connector::Http {
            addr: "127.0.0.1".into(),
            port: 12345
        }
    );
    assert!(matches!(
        args.command,
        hsm_cli::Command::Keys(KeysCommand::Import { id: 7, .. })
    ));
    let cli = Cli::try_parse_from(["quorumkms", "yubihsm", "keys", "list"]).expect("parse");
    let Top::Yubihsm(args) = cli.cmd else {
        panic!("not yubihsm")
    };
    assert!(
        args.connection.connector().is_err(),
        "a connector is required"
    );
    assert!(
        Cli::try_parse_from([
            "quorumkms",
            "yubihsm",
            "--usb",
            "--http",
            "h:1",
            "keys",
            "list"
        ])
        .is_err()
    );
}

fn mock_client() -> yubihsm::Client {
    yubihsm::Client::open(
        yubihsm::Connector::mockhsm(),
        yubihsm::Credentials::default(),
        true,
    )
    .expect("mock hsm")
}

fn run_hsm(command: hsm_cli::Command, client: &yubihsm::Client) -> Result<String, String> {
    let mut out = Vec::new();
    hsm_cli::run_with_client(&command, client, &mut out).map_err(|e| e.to_string())?;
    Ok(String::from_utf8(out).expect("utf-8"))
}

#[test]
fn yubihsm_keys_generate_import_list() {
    let client = mock_client();
    let out = run_hsm(
        hsm_cli::Command::Keys(KeysCommand::Generate {
            id: 1,
            label: "generated".into(),
            key_type: KeyType::Ed25519,
        }),
        &client,
    )
    .expect("generate");
    assert!(out.contains("generated Ed25519 key 1"), "{out}");

    let out = run_hsm(
        hsm_cli::Command::Keys(KeysCommand::Import {
            id: 2,
            path: FIXTURE.into(),
            label: "imported".into(),
            key_type: KeyType::Ed25519,
        }),
        &client,
    )
    .expect("import json");
    assert!(out.contains(VECTOR_PUB_HEX), "{out}");

    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("soft.key");
    let soft = SoftSigner::from_seed([8; 32]);
    soft.write(&key).expect("write");
    run_hsm(
        hsm_cli::Command::Keys(KeysCommand::Import {
            id: 3,
            path: key,
            label: "from softsign".into(),
            key_type: KeyType::Ed25519,
        }),
        &client,
    )
    .expect("import key file");

    let out = run_hsm(hsm_cli::Command::Keys(KeysCommand::List), &client).expect("list");
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[1].contains(VECTOR_PUB_HEX) && lines[1].contains("imported"),
        "{out}"
    );
    assert!(lines[2].contains(&hex::encode(soft.public_key())), "{out}");
}

#[test]
fn yubihsm_setup_creates_a_working_auth_key() {
    let client = mock_client();
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("pw");
    fs::write(&pw, "correct horse\n").expect("write");
    let out = run_hsm(
        hsm_cli::Command::Setup {
            new_auth_key_id: 2,
            new_password_file: pw,
            delete_default: false,
        },
        &client,
    )
    .expect("setup");
    assert!(out.contains("created authentication key 2"), "{out}");
    // The same (mock) device accepts the new credentials.
    let again = yubihsm::Client::open(
        client.connector().clone(),
        yubihsm::Credentials::from_password(2, b"correct horse"),
        false,
    );
    assert!(again.is_ok(), "new auth key works");
}

#[cfg(feature = "mockhsm")]
#[test]
fn yubihsm_run_with_the_mock_flag() {
    let cli = Cli::try_parse_from(["quorumkms", "yubihsm", "--mock", "keys", "generate", "1"])
        .expect("parse");
    let Top::Yubihsm(args) = cli.cmd else {
        panic!("not yubihsm")
    };
    hsm_cli::run(&args).expect("run against the mock");
}
