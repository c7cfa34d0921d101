//! A private SoftHSM2 token: its own configuration file and token
//! directory, so tests and the bench never touch the system's tokens.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` when the module is initialised, so every
//! process that uses the token (a node, `quorumkms pkcs11`) gets
//! [`SoftHsm::env`] in its environment.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::keys::KeyType;

/// Where Debian and other distributions install the module.
const MODULE_PATHS: [&str; 4] = [
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

/// The token's user PIN.
pub const USER_PIN: &str = "123456";
/// The token's security officer PIN.
pub const SO_PIN: &str = "12345678";
/// The token's label.
pub const TOKEN_LABEL: &str = "quorumkms-test";

/// The SoftHSM2 module, if installed (`QUORUMKMS_SOFTHSM_MODULE` first).
pub fn module() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("QUORUMKMS_SOFTHSM_MODULE") {
        return Some(PathBuf::from(path)).filter(|p| p.exists());
    }
    MODULE_PATHS.iter().map(PathBuf::from).find(|p| p.exists())
}

/// Why SoftHSM2 cannot be used here, or `None` when it can: the module and
/// `softhsm2-util` are both needed.
pub fn unavailable() -> Option<String> {
    if module().is_none() {
        if let Some(path) = std::env::var_os("QUORUMKMS_SOFTHSM_MODULE") {
            return Some(format!(
                "QUORUMKMS_SOFTHSM_MODULE names {}, which does not exist",
                PathBuf::from(path).display()
            ));
        }
        return Some(format!(
            "the SoftHSM2 module is not installed (looked in {}; apt-get install softhsm2)",
            MODULE_PATHS.join(", ")
        ));
    }
    match Command::new("softhsm2-util").arg("--version").output() {
        Ok(out) if out.status.success() => None,
        _ => Some("softhsm2-util is not installed (apt-get install softhsm2)".into()),
    }
}

/// A token in a directory of its own.
#[derive(Debug, Clone)]
pub struct SoftHsm {
    /// The module.
    pub module: PathBuf,
    /// The configuration file (`SOFTHSM2_CONF`).
    pub conf: PathBuf,
    /// The token directory the configuration names.
    pub tokens: PathBuf,
    /// A 0600 file holding [`USER_PIN`].
    pub pin_file: PathBuf,
}

impl SoftHsm {
    /// Writes a configuration under `dir` and initialises a token labelled
    /// [`TOKEN_LABEL`] in it.
    ///
    /// # Errors
    ///
    /// SoftHSM2 missing ([`unavailable`]), or a file or `softhsm2-util`
    /// failing.
    pub fn create(dir: &Path) -> Result<SoftHsm, String> {
        if let Some(why) = unavailable() {
            return Err(why);
        }
        let module = module().ok_or("no SoftHSM2 module")?;
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).map_err(|e| format!("{}: {e}", tokens.display()))?;
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                tokens.display()
            ),
        )
        .map_err(|e| format!("{}: {e}", conf.display()))?;
        let pin_file = dir.join("pkcs11-pin");
        crate::keys::softsign::write_secret_file(&pin_file, format!("{USER_PIN}\n").as_bytes())
            .map_err(|e| e.to_string())?;
        let hsm = SoftHsm {
            module,
            conf,
            tokens,
            pin_file,
        };
        hsm.init_token()?;
        Ok(hsm)
    }

    /// Initialises a fresh token labelled [`TOKEN_LABEL`] (a new, empty
    /// one each time).
    ///
    /// # Errors
    ///
    /// When `softhsm2-util` fails.
    pub fn init_token(&self) -> Result<(), String> {
        let out = Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                TOKEN_LABEL,
                "--pin",
                USER_PIN,
                "--so-pin",
                SO_PIN,
            ])
            .envs(self.env())
            .output()
            .map_err(|e| format!("softhsm2-util: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "softhsm2-util --init-token failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// The environment a process needs to see this token.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("SOFTHSM2_CONF".into(), self.conf.display().to_string())]
    }

    /// The `quorumkms pkcs11` flags that name this token.
    pub fn cli_args(&self) -> Vec<String> {
        vec![
            "pkcs11".into(),
            "--module".into(),
            self.module.display().to_string(),
            "--token-label".into(),
            TOKEN_LABEL.into(),
            "--pin-file".into(),
            self.pin_file.display().to_string(),
        ]
    }

    /// A `[[providers.pkcs11]]` section for key `label` signing `chains`.
    pub fn providers(&self, chains: &[&str], label: &str, key_type: KeyType) -> String {
        let quoted: Vec<String> = chains.iter().map(|c| format!("\"{c}\"")).collect();
        format!(
            "[[providers.pkcs11]]\nmodule = \"{}\"\ntoken_label = \"{TOKEN_LABEL}\"\npin_file = \"{}\"\n\n\
             [[providers.pkcs11.keys]]\nchain_ids = [{}]\nlabel = \"{label}\"\nkey_type = \"{key_type}\"\n",
            self.module.display(),
            self.pin_file.display(),
            quoted.join(", ")
        )
    }
}
