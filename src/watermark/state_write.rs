//! How a state file is written durably with as few syncs as crash safety
//! allows.
//!
//! A chain's state lives in two files, each overwritten in place (no
//! rename, so no directory sync once both exist):
//!
//! - the journal, `<state file>.journal`: a checksummed copy of the state
//!   being written, in a format of our own;
//! - the state file itself, CometBFT's `priv_validator_state.json`, padded
//!   with trailing spaces to its previous length so its size (and so its
//!   metadata) stays put.
//!
//! A write is: journal, `fdatasync`, state file, `fdatasync`. A crash can
//! tear only the file being written, and the other one then holds a state
//! at or above the last one acknowledged:
//!
//! - torn journal: its checksum fails; the state file still holds the
//!   previous state, the last acknowledged one;
//! - torn state file: the journal holds the new state in full.
//!
//! Reading takes the higher of the two that are valid (the journal on a
//! tie), so the watermark never drops below the last acknowledged write. A
//! torn state file that still parses can only show positions from the old
//! or new state when the disk tears at sector boundaries (every position
//! field sits in the first sector); tearing inside a number could show a
//! higher position, never a lower one, since the intact journal then holds
//! the new state.
//!
//! Why each sync is needed: without the first, a crash while the state
//! file is being overwritten could find the journal not yet on disk and the
//! state file torn; without the second, the next write's journal could tear
//! while the state file's last write was still in the page cache. The
//! rename scheme (temporary file, fsync, rename, fsync of the directory)
//! also needs both of its syncs, but each of them commits metadata; here a
//! steady-state write commits data only.
//!
//! The state file stays a valid CometBFT file whenever it is not torn:
//! after a crash between the two writes it holds the previous state, which
//! is the last acknowledged one, so a copy of it is never below what was
//! signed.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The two files a state is written to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// `priv_validator_state.json`.
    State,
    /// Its checksummed copy.
    Journal,
}

/// The file operations a state write is made of, so tests can crash a
/// write between any two of them.
pub(crate) trait Disk {
    /// The file's length, `None` when it does not exist.
    fn len(&mut self, part: Part) -> io::Result<Option<u64>>;
    /// Writes `bytes` at offset 0, creating the file if needed; bytes past
    /// them stay.
    fn overwrite(&mut self, part: Part, bytes: &[u8]) -> io::Result<()>;
    /// `fdatasync`: the file's data (and size) reach the disk.
    fn sync_data(&mut self, part: Part) -> io::Result<()>;
    /// `fsync` of the directory: created names reach the disk.
    fn sync_dir(&mut self) -> io::Result<()>;
}

/// The journal's path for a state file.
pub(crate) fn journal_path(state: &Path) -> PathBuf {
    let mut name = state.file_name().unwrap_or_default().to_os_string();
    name.push(".journal");
    state.with_file_name(name)
}

const MAGIC: &str = "quorumkms-state-journal v1";

/// The journal's contents for `text`: a header with its length and
/// checksum, then the text.
pub(crate) fn journal_bytes(text: &str) -> Vec<u8> {
    let digest = hex::encode(Sha256::digest(text.as_bytes()));
    format!("{MAGIC} {} {digest}\n{text}", text.len()).into_bytes()
}

/// The text a journal holds, or `None` when it is torn or not a journal.
pub(crate) fn journal_text(bytes: &[u8]) -> Option<&str> {
    let newline = bytes.iter().position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(&bytes[..newline]).ok()?;
    let mut fields = header.strip_prefix(MAGIC)?.split_whitespace();
    let len: usize = fields.next()?.parse().ok()?;
    let digest = hex::decode(fields.next()?).ok()?;
    let text = bytes.get(newline + 1..newline + 1 + len)?;
    (Sha256::digest(text).as_slice() == digest.as_slice())
        .then(|| std::str::from_utf8(text).ok())
        .flatten()
}

/// Writes `text` durably: journal, sync, state file, sync. A file created
/// here also gets its directory synced, once.
pub(crate) fn write(disk: &mut impl Disk, text: &str) -> io::Result<()> {
    for part in [Part::Journal, Part::State] {
        let existed = disk.len(part)?;
        let bytes = match part {
            Part::Journal => journal_bytes(text),
            Part::State => padded(text, existed.unwrap_or(0)),
        };
        disk.overwrite(part, &bytes)?;
        disk.sync_data(part)?;
        if existed.is_none() {
            disk.sync_dir()?;
        }
    }
    Ok(())
}

/// `text` followed by spaces up to `len` bytes: overwritten in place, the
/// file keeps its size, and JSON ignores trailing whitespace.
fn padded(text: &str, len: u64) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if bytes.len() < len {
        bytes.resize(len, b' ');
    }
    bytes
}

/// The real files, kept open between writes.
#[derive(Debug)]
pub(crate) struct FileDisk {
    state: PathBuf,
    journal: PathBuf,
    open: [Option<File>; 2],
}

impl FileDisk {
    pub(crate) fn new(state: &Path) -> FileDisk {
        FileDisk {
            state: state.to_path_buf(),
            journal: journal_path(state),
            open: [None, None],
        }
    }

    fn path(&self, part: Part) -> &Path {
        match part {
            Part::State => &self.state,
            Part::Journal => &self.journal,
        }
    }

    fn file(&mut self, part: Part, create: bool) -> io::Result<Option<&File>> {
        let i = part as usize;
        if self.open[i].is_none() {
            let opened = OpenOptions::new()
                .write(true)
                .create(create)
                .truncate(false)
                .open(self.path(part));
            match opened {
                Ok(file) => self.open[i] = Some(file),
                Err(e) if e.kind() == io::ErrorKind::NotFound && !create => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Ok(self.open[i].as_ref())
    }

    fn dir(&self) -> PathBuf {
        match self.state.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }
}

impl Disk for FileDisk {
    fn len(&mut self, part: Part) -> io::Result<Option<u64>> {
        match self.file(part, false)? {
            Some(file) => Ok(Some(file.metadata()?.len())),
            None => Ok(None),
        }
    }

    fn overwrite(&mut self, part: Part, bytes: &[u8]) -> io::Result<()> {
        match self.file(part, true)? {
            Some(file) => file.write_all_at(bytes, 0),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn sync_data(&mut self, part: Part) -> io::Result<()> {
        match self.file(part, false)? {
            Some(file) => file.sync_data(),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn sync_dir(&mut self) -> io::Result<()> {
        File::open(self.dir())?.sync_all()
    }
}

/// Drops the open handles after a failed write, so the next one starts
/// from the files as they are.
pub(crate) fn forget(disk: &mut FileDisk) {
    disk.open = [None, None];
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watermark::state_file::{parse, render};
    use crate::watermark::{Position, SignState, Step};

    /// One file as the disk and the page cache hold it.
    #[derive(Clone, Debug, Default)]
    struct ModelFile {
        /// Contents a read sees now, `None` while the file does not exist.
        cached: Option<Vec<u8>>,
        /// The file's data on disk (whether or not its name is).
        on_disk: Vec<u8>,
        /// Written since the last data sync.
        dirty: bool,
        /// Its name is on disk.
        named: bool,
    }

    /// A disk that loses what was not synced when it crashes, and may tear
    /// an unsynced write anywhere.
    #[derive(Clone, Debug, Default)]
    struct Model {
        files: [ModelFile; 2],
        /// Operations done so far; the write fails at `crash_at`.
        ops: usize,
        crash_at: Option<usize>,
    }

    impl Model {
        fn step(&mut self) -> io::Result<()> {
            if self.crash_at == Some(self.ops) {
                return Err(io::Error::other("crash"));
            }
            self.ops += 1;
            Ok(())
        }

        /// Every contents `part` may have after a crash now: what is on
        /// disk, what was written, and torn mixes of the two split at each
        /// multiple of `granularity` (either half new); a name not yet
        /// synced may or may not be there.
        fn after_crash(&self, part: Part, granularity: usize) -> Vec<Option<Vec<u8>>> {
            let f = &self.files[part as usize];
            let Some(cached) = &f.cached else {
                return vec![None];
            };
            let old = &f.on_disk;
            let mut data = vec![old.clone()];
            if f.dirty {
                data.push(cached.clone());
                for split in (granularity..old.len().max(cached.len())).step_by(granularity) {
                    for (head, tail) in [(old, cached), (cached, old)] {
                        let mut torn = head[..split.min(head.len())].to_vec();
                        if let Some(rest) = tail.get(torn.len()..) {
                            torn.extend_from_slice(rest);
                        }
                        data.push(torn);
                    }
                }
            }
            let mut out: Vec<Option<Vec<u8>>> = data.into_iter().map(Some).collect();
            if !f.named {
                out.push(None);
            }
            out
        }
    }

    impl Disk for Model {
        fn len(&mut self, part: Part) -> io::Result<Option<u64>> {
            self.step()?;
            let f = &self.files[part as usize];
            Ok(f.cached.as_ref().map(|c| c.len() as u64))
        }

        fn overwrite(&mut self, part: Part, bytes: &[u8]) -> io::Result<()> {
            self.step()?;
            let f = &mut self.files[part as usize];
            let cached = f.cached.get_or_insert_with(Vec::new);
            if cached.len() < bytes.len() {
                cached.resize(bytes.len(), 0);
            }
            cached[..bytes.len()].copy_from_slice(bytes);
            f.dirty = true;
            Ok(())
        }

        fn sync_data(&mut self, part: Part) -> io::Result<()> {
            self.step()?;
            let f = &mut self.files[part as usize];
            f.on_disk = f.cached.clone().unwrap_or_default();
            f.dirty = false;
            Ok(())
        }

        fn sync_dir(&mut self) -> io::Result<()> {
            self.step()?;
            for f in &mut self.files {
                f.named |= f.cached.is_some();
            }
            Ok(())
        }
    }

    /// What a restarted node reads from the two files' contents.
    fn recover(state: &Option<Vec<u8>>, journal: &Option<Vec<u8>>) -> Option<SignState> {
        let from_state = state
            .as_ref()
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|t| parse(t).ok());
        let from_journal = journal
            .as_deref()
            .and_then(journal_text)
            .and_then(|t| parse(t).ok());
        crate::watermark::state_file::higher(from_state, from_journal)
    }

    fn state(height: i64, step: Step, signed: bool) -> SignState {
        SignState {
            position: Some(Position {
                height,
                round: 0,
                step,
            }),
            sign_bytes: if signed {
                format!("bytes at {height} {step:?}")
                    .repeat(20)
                    .into_bytes()
            } else {
                Vec::new()
            },
            signature: signed.then(|| vec![height as u8; 64]),
            owner: None,
        }
    }

    /// A history with heights whose digits all change (999 → 1000), a state
    /// without bytes (shorter text), and steps within one height.
    fn history() -> Vec<SignState> {
        vec![
            SignState::default(),
            state(998, Step::Precommit, true),
            state(999, Step::Propose, false),
            state(999, Step::Prevote, true),
            state(1000, Step::Propose, true),
            state(1000, Step::Precommit, true),
        ]
    }

    /// Crashes the write of each state of `history` after every operation
    /// and checks every contents the two files may then hold.
    fn crash_everywhere(granularity: usize, exact: bool) {
        let history = history();
        let mut disk = Model::default();
        let mut acked: Option<SignState> = None;
        for next in &history {
            let text = render(next);
            let mut op = 0;
            loop {
                let mut crashed = disk.clone();
                crashed.crash_at = Some(crashed.ops + op);
                let finished = write(&mut crashed, &text).is_ok();
                for s in crashed.after_crash(Part::State, granularity) {
                    for j in crashed.after_crash(Part::Journal, granularity) {
                        let got = recover(&s, &j);
                        let last = if finished { Some(next) } else { acked.as_ref() };
                        match last {
                            None => {}
                            Some(last) => {
                                let got = got.as_ref().unwrap_or_else(|| {
                                    panic!("crash at op {op} writing {next:?}: nothing readable")
                                });
                                assert!(
                                    got.position >= last.position,
                                    "crash at op {op} writing {next:?}: read {got:?}, below {last:?}"
                                );
                                if exact {
                                    assert!(
                                        got == last || got == next,
                                        "crash at op {op} writing {next:?}: read {got:?}"
                                    );
                                }
                            }
                        }
                    }
                }
                if finished {
                    break;
                }
                op += 1;
            }
            write(&mut disk, &text).unwrap();
            acked = Some(next.clone());
        }
    }

    #[test]
    fn a_crash_between_any_two_steps_keeps_the_last_acknowledged_state() {
        // Disks tear at sector boundaries: the state read back is exactly
        // the last acknowledged one or the one being written.
        crash_everywhere(512, true);
    }

    #[test]
    fn a_write_torn_at_any_byte_never_lowers_the_watermark() {
        crash_everywhere(1, false);
    }

    #[test]
    fn dropping_either_sync_can_lower_the_watermark() {
        // The same crash search on writes that skip one of the two syncs
        // must find a crash that reads back below the acknowledged state.
        for skip in [Part::Journal, Part::State] {
            let history = history();
            let mut disk = Model::default();
            let mut found = false;
            let mut acked: Option<SignState> = None;
            for next in &history {
                let text = render(next);
                for op in 0..8 {
                    let mut crashed = disk.clone();
                    crashed.crash_at = Some(crashed.ops + op);
                    let _ = write_skipping(&mut crashed, &text, skip);
                    for s in crashed.after_crash(Part::State, 512) {
                        for j in crashed.after_crash(Part::Journal, 512) {
                            let got = recover(&s, &j);
                            if let Some(last) = &acked
                                && got.as_ref().is_none_or(|g| g.position < last.position)
                            {
                                found = true;
                            }
                        }
                    }
                }
                write_skipping(&mut disk, &text, skip).unwrap();
                acked = Some(next.clone());
            }
            assert!(found, "skipping the {skip:?} sync was never caught");
        }
    }

    fn write_skipping(disk: &mut Model, text: &str, skip: Part) -> io::Result<()> {
        for part in [Part::Journal, Part::State] {
            let existed = disk.len(part)?;
            let bytes = match part {
                Part::Journal => journal_bytes(text),
                Part::State => padded(text, existed.unwrap_or(0)),
            };
            disk.overwrite(part, &bytes)?;
            if part != skip || existed.is_none() {
                disk.sync_data(part)?;
            }
            if existed.is_none() {
                disk.sync_dir()?;
            }
        }
        Ok(())
    }

    #[test]
    fn the_journal_refuses_torn_or_foreign_bytes() {
        let bytes = journal_bytes("{\"height\":\"5\"}");
        assert_eq!(journal_text(&bytes), Some("{\"height\":\"5\"}"));
        for cut in 0..bytes.len() {
            assert_eq!(journal_text(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(journal_text(&flipped), None);
        assert_eq!(journal_text(b"{\"height\":\"5\"}"), None);
        // Bytes past the text (a longer earlier journal) are ignored.
        let mut longer = bytes.clone();
        longer.extend_from_slice(b"stale tail");
        assert_eq!(journal_text(&longer), Some("{\"height\":\"5\"}"));
    }

    #[test]
    fn the_padded_state_file_still_parses() {
        let long = render(&state(7, Step::Precommit, true));
        let short = render(&state(8, Step::Propose, false));
        let bytes = padded(&short, long.len() as u64);
        assert_eq!(bytes.len(), long.len());
        let text = std::str::from_utf8(&bytes).unwrap();
        assert_eq!(parse(text).unwrap(), state(8, Step::Propose, false));
    }
}
