//! Single-node persistence of a chain's [`SignState`] in CometBFT's
//! `priv_validator_state.json` format, so an operator can copy a
//! validator's file in (and back out).
//!
//! Writes are durable and crash-safe: a checksummed journal beside the
//! file, then the file, each overwritten in place and `fdatasync`'d
//! (`state_write`). A write that returns `Ok` survives a crash at any
//! instant; a crash or failure part way leaves a state at or above the last
//! acknowledged one. Reads take the higher of the file and its journal.
//! [`StateFile::commit`] returns once the journal is synced, so a grant
//! waits for one sync; [`StateFile::settle`] updates the file after it.
//!
//! A running single-node signer holds an exclusive advisory lock on
//! `<state file>.lock` ([`StateFile::try_lock`]); `quorumkms state import`
//! takes the same lock, so it cannot change a file under a running signer.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use super::state_write::{self, FileDisk, Writer};
use super::{Position, SignState, Step};

/// Errors loading or saving a state file.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// The file does not exist.
    #[error("state file {} does not exist", .0.display())]
    Missing(PathBuf),
    /// The file exists but cannot be parsed.
    #[error("state file {} is corrupt: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Another process (a running signer, or another import) holds the
    /// file's lock.
    #[error(
        "state file {} is locked by another process (a running quorumkms node?); stop it first",
        .0.display()
    )]
    Locked(PathBuf),
    /// Reading, writing or syncing failed.
    #[error("state file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// CometBFT's JSON shape. Height is a string (amino JSON int64); round is a
/// number in CometBFT's files and a string in some tools' files, so both are
/// accepted. Empty signature and sign bytes are omitted.
#[derive(Serialize, Deserialize)]
struct Json {
    height: StringOrNumber,
    round: StringOrNumber,
    step: i8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signbytes: Option<String>,
}

#[derive(Serialize, Deserialize, Clone)]
#[serde(untagged)]
enum StringOrNumber {
    Number(i64),
    String(String),
}

impl StringOrNumber {
    fn parse(&self, what: &str) -> Result<i64, String> {
        match self {
            StringOrNumber::Number(n) => Ok(*n),
            StringOrNumber::String(s) => s
                .parse()
                .map_err(|_| format!("{what} {s:?} is not an integer")),
        }
    }
}

/// Parses CometBFT `priv_validator_state.json` text.
///
/// # Errors
///
/// Returns a reason when the JSON is malformed or out of range.
pub fn parse(text: &str) -> Result<SignState, String> {
    let json: Json = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let height = json.height.parse("height")?;
    let round = i32::try_from(json.round.parse("round")?).map_err(|_| "round out of range")?;
    let step =
        Step::from_i8(json.step).ok_or_else(|| format!("step {} is not 0..=3", json.step))?;
    if height < 0 || round < 0 {
        return Err("height and round must not be negative".into());
    }
    let sign_bytes = match json.signbytes.as_deref() {
        None | Some("") => Vec::new(),
        Some(h) => hex::decode(h).map_err(|e| format!("signbytes: {e}"))?,
    };
    let signature = match json.signature.as_deref() {
        None | Some("") => None,
        Some(b) => Some(BASE64.decode(b).map_err(|e| format!("signature: {e}"))?),
    };
    let position = (height, round, step) != (0, 0, Step::None);
    Ok(SignState {
        position: position.then_some(Position {
            height,
            round,
            step,
        }),
        sign_bytes,
        signature,
        owner: None,
    })
}

/// Renders a state as CometBFT `priv_validator_state.json` text.
pub fn render(state: &SignState) -> String {
    let p = state.position.unwrap_or(Position {
        height: 0,
        round: 0,
        step: Step::None,
    });
    let json = Json {
        height: StringOrNumber::String(p.height.to_string()),
        round: StringOrNumber::Number(i64::from(p.round)),
        step: p.step.as_i8(),
        signature: state.signature.as_ref().map(|s| BASE64.encode(s)),
        signbytes: (!state.sign_bytes.is_empty()).then(|| hex::encode_upper(&state.sign_bytes)),
    };
    // Serializing a plain struct of strings and integers cannot fail.
    serde_json::to_string_pretty(&json).unwrap_or_default()
}

/// The higher of two states read back (the journal's on a tie: it is
/// never torn, the state file may be).
pub(crate) fn higher(file: Option<SignState>, journal: Option<SignState>) -> Option<SignState> {
    match (file, journal) {
        (Some(f), Some(j)) => Some(if f.position > j.position { f } else { j }),
        (f, j) => j.or(f),
    }
}

/// A chain's state file on disk (and its journal, `<path>.journal`).
#[derive(Clone, Debug)]
pub struct StateFile {
    path: PathBuf,
    /// The files, kept open between writes, and what the state file owes.
    writes: Arc<Mutex<(FileDisk, Writer)>>,
}

impl StateFile {
    /// A handle on `path`; nothing is read yet.
    pub fn new(path: impl Into<PathBuf>) -> StateFile {
        let path = path.into();
        let disk = FileDisk::new(&path);
        StateFile {
            path,
            writes: Arc::new(Mutex::new((disk, Writer::default()))),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the state: the higher of the file and its journal, so a file
    /// torn by a crash (or copied in below the journal) never lowers it.
    ///
    /// # Errors
    ///
    /// [`StateFileError::Missing`] when there is neither file nor journal,
    /// `Corrupt` when the file does not parse and there is no valid
    /// journal, `Io` otherwise.
    pub fn load(&self) -> Result<SignState, StateFileError> {
        let read = |path: &Path| match fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(self.io(source)),
        };
        let journal = read(&state_write::journal_path(&self.path))?;
        let file = read(&self.path)?;
        let state =
            state_write::read_back(file.as_deref(), journal.as_deref()).map_err(|reason| {
                StateFileError::Corrupt {
                    path: self.path.clone(),
                    reason,
                }
            })?;
        let readable = file
            .as_deref()
            .and_then(|f| std::str::from_utf8(f).ok())
            .is_some_and(|f| parse(f).is_ok());
        if !readable && state.is_some() {
            tracing::warn!(
                file = %self.path.display(),
                "state file missing or torn; read from its journal"
            );
        }
        state.ok_or_else(|| StateFileError::Missing(self.path.clone()))
    }

    /// Durably replaces the state with `state`: both the journal and the
    /// file hold it on return.
    ///
    /// # Errors
    ///
    /// Any failure to write or sync; what a load then reads is at or above
    /// the previous state.
    pub fn save(&self, state: &SignState) -> Result<(), StateFileError> {
        let text = render(state);
        self.with_writes(|disk, writer| writer.save(disk, &text))
    }

    /// Makes `state` durable with one sync (its journal): on return no
    /// crash can lose it. The file itself is updated by
    /// [`StateFile::settle`], or by the next write.
    ///
    /// # Errors
    ///
    /// Any failure to write or sync; what a load then reads is at or above
    /// the previous state.
    pub fn commit(&self, state: &SignState) -> Result<(), StateFileError> {
        let text = render(state);
        self.with_writes(|disk, writer| writer.commit(disk, &text))
    }

    /// Writes the last committed state into the file itself, if it is
    /// still owed.
    ///
    /// # Errors
    ///
    /// Any failure to write or sync; the next write tries again first.
    pub fn settle(&self) -> Result<(), StateFileError> {
        self.with_writes(|disk, writer| writer.settle(disk))
    }

    fn with_writes(
        &self,
        write: impl FnOnce(&mut FileDisk, &mut Writer) -> io::Result<()>,
    ) -> Result<(), StateFileError> {
        let mut writes = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        let (disk, writer) = &mut *writes;
        write(disk, writer).map_err(|e| {
            state_write::forget(disk);
            self.io(e)
        })
    }

    /// Takes the file's exclusive lock (on `<path>.lock`, created if
    /// needed), held until the returned guard is dropped.
    ///
    /// # Errors
    ///
    /// [`StateFileError::Locked`] when another process holds it, `Io` when
    /// the lock file cannot be opened.
    pub fn try_lock(&self) -> Result<StateLock, StateFileError> {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".lock");
        let path = self.path.with_file_name(name);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| StateFileError::Io {
                path: path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(StateLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(StateFileError::Locked(self.path.clone())),
            Err(fs::TryLockError::Error(source)) => Err(StateFileError::Io { path, source }),
        }
    }

    fn io(&self, source: io::Error) -> StateFileError {
        StateFileError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

/// An exclusive lock on a state file; released when dropped.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

/// Writes `contents` to `path` so that after a crash the file holds either
/// the old or the new contents, and after `Ok` it holds the new ones. Both
/// syncs are needed: without the file's, the rename may reach the disk
/// before the data (an empty file); without the directory's, the old file
/// may come back.
pub fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(&dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cometbft_files() {
        let initial = parse(r#"{"height":"0","round":0,"step":0}"#).unwrap();
        assert_eq!(initial, SignState::default());
        let s = parse(r#"{"height":"1","round":1,"step":1}"#).unwrap();
        assert_eq!(
            s.position,
            Some(Position {
                height: 1,
                round: 1,
                step: Step::Propose
            })
        );
        // Some tools write the round as a string.
        let s = parse(r#"{"height":"7","round":"2","step":3}"#).unwrap();
        assert_eq!(s.position.unwrap().round, 2);
    }

    #[test]
    fn round_trips_with_signature_and_bytes() {
        let state = SignState {
            position: Some(Position {
                height: 9,
                round: 0,
                step: Step::Precommit,
            }),
            sign_bytes: vec![1, 2, 0xab],
            signature: Some(vec![9; 64]),
            owner: None,
        };
        let text = render(&state);
        assert!(text.contains("\"height\": \"9\""));
        assert!(text.contains("\"signbytes\": \"0102AB\""));
        assert_eq!(parse(&text).unwrap(), state);
    }

    #[test]
    fn rejects_malformed_state() {
        for bad in [
            "",
            "{",
            r#"{"height":"x","round":0,"step":0}"#,
            r#"{"height":"1","round":0,"step":9}"#,
            r#"{"height":"-1","round":0,"step":1}"#,
            r#"{"height":"1","round":0,"step":1,"signbytes":"zz"}"#,
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn the_lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("s.json"));
        let held = file.try_lock().unwrap();
        assert!(matches!(file.try_lock(), Err(StateFileError::Locked(_))));
        drop(held);
        assert!(file.try_lock().is_ok());
    }

    #[test]
    fn save_then_load_and_missing_and_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("s.json"));
        assert!(matches!(file.load(), Err(StateFileError::Missing(_))));
        let state = SignState {
            position: Some(Position {
                height: 3,
                round: 1,
                step: Step::Prevote,
            }),
            ..SignState::default()
        };
        file.save(&state).unwrap();
        assert_eq!(file.load().unwrap(), state);
        // A torn file is read from its journal; without one it is corrupt.
        fs::write(file.path(), "{not json").unwrap();
        assert_eq!(file.load().unwrap(), state);
        fs::remove_file(state_write::journal_path(file.path())).unwrap();
        assert!(matches!(file.load(), Err(StateFileError::Corrupt { .. })));
    }

    #[test]
    fn a_file_copied_in_raises_but_never_lowers() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("s.json"));
        let at = |height| SignState {
            position: Some(Position {
                height,
                round: 0,
                step: Step::Prevote,
            }),
            ..SignState::default()
        };
        file.save(&at(10)).unwrap();
        fs::write(file.path(), render(&at(20))).unwrap();
        assert_eq!(file.load().unwrap(), at(20));
        fs::write(file.path(), render(&at(5))).unwrap();
        assert_eq!(
            file.load().unwrap(),
            at(10),
            "the journal keeps the watermark"
        );
    }

    #[test]
    fn a_shorter_state_is_padded_in_place_and_writes_reuse_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("s.json"));
        let long = SignState {
            position: Some(Position {
                height: 3,
                round: 0,
                step: Step::Precommit,
            }),
            sign_bytes: vec![7; 150],
            signature: Some(vec![1; 64]),
            owner: None,
        };
        file.save(&long).unwrap();
        let len = fs::metadata(file.path()).unwrap().len();
        let short = SignState {
            position: Some(Position {
                height: 4,
                round: 0,
                step: Step::Propose,
            }),
            ..SignState::default()
        };
        file.save(&short).unwrap();
        assert_eq!(fs::metadata(file.path()).unwrap().len(), len);
        let text = fs::read_to_string(file.path()).unwrap();
        assert_eq!(parse(&text).unwrap(), short, "trailing spaces still parse");
        assert_eq!(file.load().unwrap(), short);
        assert_eq!(StateFile::new(file.path()).load().unwrap(), short);
    }
}
