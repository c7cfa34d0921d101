//! tmkms as a comparison signer: its config for the bench's chains and
//! validators, with the same consensus key as the quorumkms nodes, started
//! as a child process.
//!
//! tmkms reads a softsign key as a base64 32-byte seed (the format of
//! quorumkms's softsign files), keeps each chain's watermark in a state
//! file of its own, and dials each `[[validator]]`: `unix://` plainly, or
//! `tcp://ID@host:port` over SecretConnection with an identity key.

use std::path::Path;
use std::process::Stdio;

use quorumkms::keys::softsign::{encode_seed, write_secret_file};
use tokio::process::{Child, Command};

/// A running tmkms and the directory holding its config, key and state.
pub struct Tmkms {
    /// The tmkms process.
    pub child: Child,
}

/// tmkms's config: one chain and one validator per `(chain, address)`,
/// signing with `key.b64` for every chain.
fn config(validators: &[(String, String)], dir: &Path) -> String {
    let mut chains: Vec<&str> = validators.iter().map(|(c, _)| c.as_str()).collect();
    chains.dedup();
    let mut text = String::new();
    for chain in &chains {
        text.push_str(&format!(
            "[[chain]]\nid = \"{chain}\"\nkey_format = {{ type = \"hex\" }}\n\
             sign_extensions = true\nstate_file = \"{}\"\n\n",
            dir.join(format!("{chain}-state.json")).display()
        ));
    }
    for (chain, addr) in validators {
        let identity = if addr.starts_with("tcp://") {
            format!("secret_key = \"{}\"\n", dir.join("identity.b64").display())
        } else {
            String::new()
        };
        text.push_str(&format!(
            "[[validator]]\naddr = \"{addr}\"\nchain_id = \"{chain}\"\nreconnect = true\n\
             {identity}protocol_version = \"v0.38\"\n\n"
        ));
    }
    let quoted: Vec<String> = chains.iter().map(|c| format!("\"{c}\"")).collect();
    text.push_str(&format!(
        "[[providers.softsign]]\nchain_ids = [{}]\nkey_type = \"consensus\"\npath = \"{}\"\n",
        quoted.join(", "),
        dir.join("key.b64").display()
    ));
    text
}

impl Tmkms {
    /// Writes tmkms's files into `dir` (key from `seed`, a fresh identity
    /// key) and starts `exe`; its output goes to `dir/tmkms.log`.
    pub fn start(
        exe: &Path,
        dir: &Path,
        seed: &[u8; 32],
        validators: &[(String, String)],
    ) -> Result<Tmkms, Box<dyn std::error::Error>> {
        write_secret_file(&dir.join("key.b64"), encode_seed(seed).as_bytes())?;
        let identity: [u8; 32] = rand::random();
        write_secret_file(&dir.join("identity.b64"), encode_seed(&identity).as_bytes())?;
        let config_path = dir.join("tmkms.toml");
        std::fs::write(&config_path, config(validators, dir))?;
        let log = std::fs::File::create(dir.join("tmkms.log"))?;
        let child = Command::new(exe)
            .arg("start")
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        Ok(Tmkms { child })
    }

    /// Kills tmkms and waits for it.
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_names_every_chain_validator_and_the_key() {
        let dir = Path::new("/d");
        let text = config(
            &[
                ("a".into(), "unix:///s/a.sock".into()),
                ("b".into(), "tcp://00ff@127.0.0.1:9".into()),
            ],
            dir,
        );
        let value: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(value["chain"].as_array().unwrap().len(), 2);
        let validators = value["validator"].as_array().unwrap();
        assert!(validators[0].get("secret_key").is_none());
        assert_eq!(
            validators[1]["secret_key"].as_str(),
            Some("/d/identity.b64")
        );
        assert_eq!(
            value["providers"]["softsign"][0]["chain_ids"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }
}
