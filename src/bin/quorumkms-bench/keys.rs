//! `--keys`: the latency of one signature on each key backend, in
//! process, without the network or the watermark: what a backend adds to
//! every sign request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use quorumkms::keys::pkcs11::{KeyRef, Pkcs11Signer, Token, TokenSelector};
use quorumkms::keys::softsign::SoftSigner;
use quorumkms::keys::{ConsensusSigner, KeyType};
use quorumkms::testnet::softhsm::{self, SoftHsm};

use crate::measure::percentile;

/// One backend's figures, or why it was not measured.
pub struct Row {
    /// Backend and key type.
    pub name: String,
    /// p50 and p99, or the reason there are none.
    pub latency: Result<(Duration, Duration), String>,
}

/// Signs `n` CometBFT-sized messages (a vote's sign bytes are about 120
/// bytes) with `signer`, returning p50 and p99.
fn time(signer: &dyn ConsensusSigner, n: usize) -> Result<(Duration, Duration), String> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let msg = [i.to_le_bytes().as_slice(), &[7u8; 112]].concat();
        let started = Instant::now();
        signer.sign(&msg).map_err(|e| e.to_string())?;
        samples.push(started.elapsed());
    }
    samples.sort();
    Ok((percentile(&samples, 0.50), percentile(&samples, 0.99)))
}

#[cfg(feature = "mockhsm")]
fn mockhsm(n: usize, key_type: KeyType) -> Result<(Duration, Duration), String> {
    use quorumkms::keys::yubihsm::{self, Connector, YubiHsmSigner};
    let client = yubihsm::connect(&Connector::Mock, 1, "password").map_err(|e| e.to_string())?;
    yubihsm::generate_typed_key(&client, 1, "bench", key_type).map_err(|e| e.to_string())?;
    let signer = YubiHsmSigner::new(client, 1).map_err(|e| e.to_string())?;
    time(&signer, n)
}

#[cfg(not(feature = "mockhsm"))]
fn mockhsm(_n: usize, _key_type: KeyType) -> Result<(Duration, Duration), String> {
    Err("not built in (a debug build with --features mockhsm)".into())
}

/// Makes a token in a temporary directory and points this process at it.
/// Call before any thread starts: SoftHSM2 reads `SOFTHSM2_CONF` from the
/// environment.
pub fn prepare_softhsm() -> Result<(tempfile::TempDir, SoftHsm), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let hsm = SoftHsm::create(dir.path())?;
    for (key, value) in hsm.env() {
        // SAFETY: called from main before the runtime or any other thread
        // exists, so nothing reads the environment concurrently.
        unsafe { std::env::set_var(key, value) };
    }
    Ok((dir, hsm))
}

fn softhsm_signer(hsm: &SoftHsm, key_type: KeyType) -> Result<Pkcs11Signer, String> {
    let label = format!("bench-{key_type}");
    let admin = quorumkms::keys::pkcs11::Admin::open(
        &hsm.module,
        &TokenSelector::Label(softhsm::TOKEN_LABEL.into()),
        softhsm::USER_PIN,
    )
    .map_err(|e| e.to_string())?;
    let generated = admin.generate(key_type, &label, label.as_bytes());
    admin.close();
    generated.map_err(|e| e.to_string())?;
    let token: Arc<Token> = Token::new(
        hsm.module.clone(),
        TokenSelector::Label(softhsm::TOKEN_LABEL.into()),
        zeroize::Zeroizing::new(softhsm::USER_PIN.into()),
    );
    Pkcs11Signer::new(token, KeyRef::Label(label), key_type, 4).map_err(|e| e.to_string())
}

/// Every backend's row.
pub fn measure(n: usize, softhsm: Result<&SoftHsm, &str>) -> Vec<Row> {
    let mut rows = Vec::new();
    for key_type in [KeyType::Ed25519, KeyType::Secp256k1] {
        rows.push(Row {
            name: format!("soft {key_type}"),
            latency: time(&SoftSigner::generate_type(key_type), n),
        });
    }
    for key_type in [KeyType::Ed25519, KeyType::Secp256k1] {
        rows.push(Row {
            name: format!("YubiHSM 2 mockhsm {key_type}"),
            latency: mockhsm(n, key_type),
        });
    }
    for key_type in [KeyType::Ed25519, KeyType::Secp256k1] {
        rows.push(Row {
            name: format!("PKCS#11 SoftHSM2 {key_type}"),
            latency: match softhsm {
                Ok(hsm) => softhsm_signer(hsm, key_type).and_then(|s| time(&s, n)),
                Err(why) => Err(why.to_string()),
            },
        });
    }
    rows
}

/// Prints the rows as a markdown table.
pub fn print(rows: &[Row], n: usize) {
    println!("\nSigning latency per key backend ({n} signatures each, in process):\n");
    println!("| backend | p50 | p99 |");
    println!("|---|---:|---:|");
    for row in rows {
        match &row.latency {
            Ok((p50, p99)) => println!(
                "| {} | {:.3} ms | {:.3} ms |",
                row.name,
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3
            ),
            Err(why) => println!("| {} | – | – ({why}) |", row.name),
        }
    }
}
