//! How a state file is written durably with as few syncs as crash safety
//! allows.
//!
//! A chain's state lives in two files, each overwritten in place (no
//! rename, so no directory sync once both exist):
//!
//! - the journal, `<state file>.journal`: a checksummed copy of the latest
//!   state, in a format of our own;
//! - the state file itself, CometBFT's `priv_validator_state.json`, padded
//!   with trailing spaces to its previous length so its size (and so its
//!   metadata) stays put.
//!
//! A write ([`Writer::commit`]) is the journal and one `fdatasync`: the
//! state is then durable and its signature may leave. The state file's
//! copy of it is owed until [`Writer::settle`] writes and syncs it, off the
//! grant's path; the next commit settles first if it is still owed, since
//! the journal may only be overwritten while the state file holds a state
//! at or above it. A crash can therefore tear only the file being written,
//! and the other one then holds a state at or above the last one
//! acknowledged:
//!
//! - torn journal: its checksum fails; the state file holds the previous
//!   state, the last acknowledged one;
//! - torn state file: the journal holds the state being settled, the
//!   latest.
//!
//! Reading ([`read_back`]) takes the higher of the two that are valid (the
//! journal on a tie), so the watermark never drops below the last
//! acknowledged write. After a restart the state read back may be re-served
//! without a write, so a writer's first commit makes the state file hold it
//! before touching the journal.
//!
//! Why both syncs are needed: the journal's makes the grant durable; the
//! state file's must precede the next journal write, or a crash tearing
//! that write would leave only an older state file. The rename scheme
//! (temporary file, fsync, rename, fsync of the directory) also needs both
//! of its syncs before the grant returns, and each of them commits
//! metadata; here one data-only sync is on the grant's path.
//!
//! A torn state file that still parses can only show positions from the
//! old or the new state when the disk tears at sector boundaries (every
//! position field sits in the first sector); tearing inside a number could
//! show a higher position, never a lower one, since the intact journal
//! then holds the new state.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{SignState, state_file};

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
    /// The file's contents, `None` when it does not exist.
    fn read(&mut self, part: Part) -> io::Result<Option<Vec<u8>>>;
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
    let text = bytes.get(newline + 1..(newline + 1).checked_add(len)?)?;
    (Sha256::digest(text).as_slice() == digest.as_slice())
        .then(|| std::str::from_utf8(text).ok())
        .flatten()
}

/// What the two files' contents say: the higher of a valid journal and a
/// state file that parses (the journal on a tie); `None` when neither file
/// exists.
///
/// # Errors
///
/// The state file's parse error when it does not parse and there is no
/// valid journal.
pub(crate) fn read_back(
    state: Option<&[u8]>,
    journal: Option<&[u8]>,
) -> Result<Option<SignState>, String> {
    let journal = journal
        .and_then(journal_text)
        .and_then(|t| state_file::parse(t).ok());
    let state = state.map(|bytes| {
        std::str::from_utf8(bytes)
            .map_err(|e| e.to_string())
            .and_then(state_file::parse)
    });
    match (state, journal) {
        (Some(Err(reason)), None) => Err(reason),
        (state, journal) => Ok(state_file::higher(state.and_then(Result::ok), journal)),
    }
}

/// One state file's writes: what the state file still owes, and whether
/// it was brought up to what the disk held when this writer started.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    settled: bool,
    owed: Option<String>,
}

impl Writer {
    /// Writes `text` durably: on return a crash can no longer lose it. The
    /// state file is updated by [`Writer::settle`] (or the next commit).
    pub(crate) fn commit(&mut self, disk: &mut impl Disk, text: &str) -> io::Result<()> {
        self.settle(disk)?;
        write_part(disk, Part::Journal, text)?;
        self.owed = Some(text.to_string());
        Ok(())
    }

    /// Writes and syncs the state file's copy of the last commit, if owed;
    /// on a writer's first call, first makes the state file hold what the
    /// disk reads back (a restart may re-serve it without a write).
    pub(crate) fn settle(&mut self, disk: &mut impl Disk) -> io::Result<()> {
        if !self.settled {
            let state = disk.read(Part::State)?;
            let journal = disk.read(Part::Journal)?;
            let current = read_back(state.as_deref(), journal.as_deref())
                .map_err(|reason| io::Error::other(format!("state file corrupt: {reason}")))?;
            if let Some(current) = current {
                let text = state_file::render(&current);
                let written = state.as_deref().map(|s| s.trim_ascii_end());
                if written != Some(text.as_bytes()) {
                    write_part(disk, Part::State, &text)?;
                }
            }
            self.settled = true;
        }
        if let Some(text) = &self.owed {
            write_part(disk, Part::State, text)?;
            self.owed = None;
        }
        Ok(())
    }

    /// Commits and settles: both files hold `text` on return.
    pub(crate) fn save(&mut self, disk: &mut impl Disk, text: &str) -> io::Result<()> {
        self.commit(disk, text)?;
        self.settle(disk)
    }
}

/// Overwrites one file with `text` and syncs it; a file created here also
/// gets its directory synced.
fn write_part(disk: &mut impl Disk, part: Part, text: &str) -> io::Result<()> {
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
    fn read(&mut self, part: Part) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.path(part)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

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
    use crate::watermark::{Position, Step};

    /// What a crash leaves: the state file and the journal (`None`:
    /// absent).
    type Contents = (Option<Vec<u8>>, Option<Vec<u8>>);

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
        /// Operations done so far; an operation fails from `crash_at` on.
        ops: usize,
        crash_at: Option<usize>,
        /// A sync this disk pretends to do (to show it is needed).
        skipped_sync: Option<Part>,
    }

    impl Model {
        /// A disk holding these contents, all synced.
        fn with(state: Option<Vec<u8>>, journal: Option<Vec<u8>>) -> Model {
            let file = |contents: Option<Vec<u8>>| ModelFile {
                on_disk: contents.clone().unwrap_or_default(),
                named: contents.is_some(),
                cached: contents,
                dirty: false,
            };
            Model {
                files: [file(state), file(journal)],
                ..Model::default()
            }
        }

        fn step(&mut self) -> io::Result<()> {
            if self.crash_at.is_some_and(|at| self.ops >= at) {
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

        /// Every (state file, journal) pair a crash now may leave.
        fn crashes(&self, granularity: usize) -> Vec<Contents> {
            let mut out = Vec::new();
            for s in self.after_crash(Part::State, granularity) {
                for j in self.after_crash(Part::Journal, granularity) {
                    out.push((s.clone(), j));
                }
            }
            out
        }
    }

    impl Disk for Model {
        fn read(&mut self, part: Part) -> io::Result<Option<Vec<u8>>> {
            self.step()?;
            Ok(self.files[part as usize].cached.clone())
        }

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
            if self.skipped_sync != Some(part) || !f.named {
                f.on_disk = f.cached.clone().unwrap_or_default();
                f.dirty = false;
            }
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

    /// What a restarted node reads back (nothing readable: `None`).
    fn recover(contents: &Contents) -> Option<SignState> {
        read_back(contents.0.as_deref(), contents.1.as_deref())
            .ok()
            .flatten()
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

    /// A violation found by [`explore`]: what was read back after which
    /// crash.
    type Violation = String;

    /// Writes `states` as the single-node granter does (commit, which
    /// acknowledges, then settle), on `disk` with a fresh writer, crashing
    /// after every operation; checks that every contents a crash may leave
    /// reads back at or above the last acknowledged state (`acked` before
    /// the first commit returns), and with `exact`, that it is that state
    /// or the one being written. With `restarts`, each crash's contents
    /// are also restarted from: a fresh writer writes the rest of `states`
    /// on them, and what was read back counts as acknowledged (a restarted
    /// node may re-serve it without a write).
    fn explore(
        disk: Model,
        acked: Option<SignState>,
        states: &[SignState],
        granularity: usize,
        exact: bool,
        restarts: bool,
        violations: &mut Vec<Violation>,
    ) {
        let mut disk = disk;
        let mut writer = Writer::default();
        let mut acked = acked;
        for (i, next) in states.iter().enumerate() {
            let text = render(next);
            for op in 0.. {
                let mut crashed = disk.clone();
                crashed.crash_at = Some(crashed.ops + op);
                let mut w = Writer {
                    settled: writer.settled,
                    owed: writer.owed.clone(),
                };
                let committed = w.commit(&mut crashed, &text).is_ok();
                let settled = committed && w.settle(&mut crashed).is_ok();
                let last = if committed {
                    Some(next)
                } else {
                    acked.as_ref()
                };
                for contents in crashed.crashes(granularity) {
                    let got = recover(&contents);
                    let Some(last) = last else { continue };
                    let ok = match &got {
                        None => false,
                        Some(got) => {
                            got.position >= last.position && (!exact || got == last || got == next)
                        }
                    };
                    if !ok {
                        violations.push(format!(
                            "crash at op {op} writing {:?}: read {:?}, acknowledged {:?}",
                            next.position,
                            got.map(|g| g.position),
                            last.position
                        ));
                        return;
                    }
                    if restarts && got.is_some() && i + 1 < states.len() {
                        let restarted = Model::with(contents.0.clone(), contents.1.clone());
                        explore(
                            Model {
                                skipped_sync: disk.skipped_sync,
                                ..restarted
                            },
                            got,
                            &states[i + 1..],
                            granularity,
                            exact,
                            false,
                            violations,
                        );
                    }
                }
                if settled {
                    break;
                }
            }
            writer.commit(&mut disk, &text).unwrap();
            writer.settle(&mut disk).unwrap();
            acked = Some(next.clone());
        }
    }

    /// Violations on `model`; restarts only when tearing at sectors (every
    /// byte times every restart would take minutes).
    fn violations(model: Model, granularity: usize, exact: bool) -> Vec<Violation> {
        let mut found = Vec::new();
        let restarts = granularity >= 512;
        let history = history();
        explore(
            model,
            None,
            &history,
            granularity,
            exact,
            restarts,
            &mut found,
        );
        found
    }

    #[test]
    fn a_crash_between_any_two_steps_keeps_the_last_acknowledged_state() {
        // Disks tear at sector boundaries: the state read back is exactly
        // the last acknowledged one or the one being written, also after
        // restarting from any crash and writing on.
        let found = violations(Model::default(), 512, true);
        assert!(found.is_empty(), "{found:#?}");
    }

    #[test]
    fn a_write_torn_at_any_byte_never_lowers_the_watermark() {
        let found = violations(Model::default(), 1, false);
        assert!(found.is_empty(), "{found:#?}");
    }

    #[test]
    fn dropping_either_sync_can_lower_the_watermark() {
        for part in [Part::Journal, Part::State] {
            let model = Model {
                skipped_sync: Some(part),
                ..Model::default()
            };
            assert!(
                !violations(model, 512, false).is_empty(),
                "skipping the {part:?} sync was never caught"
            );
        }
    }

    #[test]
    fn a_restarted_writer_first_brings_the_state_file_up_to_the_journal() {
        // A crash after the journal's sync: the journal is ahead.
        let behind = render(&state(5, Step::Prevote, true));
        let ahead = render(&state(5, Step::Precommit, true));
        let mut disk = Model::with(Some(behind.into_bytes()), Some(journal_bytes(&ahead)));
        Writer::default()
            .commit(&mut disk, &render(&state(6, Step::Propose, false)))
            .unwrap();
        let file = disk.files[Part::State as usize].on_disk.clone();
        let file = std::str::from_utf8(&file).unwrap();
        assert_eq!(parse(file).unwrap(), state(5, Step::Precommit, true));
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
        let huge = format!("{MAGIC} {} 00\nx", usize::MAX);
        assert_eq!(journal_text(huge.as_bytes()), None);
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
