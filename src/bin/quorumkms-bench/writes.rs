//! `--state-write`: the cost of one single-node state write under each
//! write scheme, in the `--tmp` directory (a disk, or /dev/shm).
//!
//! The scheme quorumkms uses (a grant waits for the journal's
//! `fdatasync`; the file in place is synced after), a whole save (both
//! syncs), the rename scheme it replaced and cheaper schemes that are not
//! crash-safe, so the table shows what each sync costs.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use quorumkms::watermark::{Position, SignState, StateFile, Step, write_atomically};

use crate::measure::percentile;

/// A state as a vote leaves it: sign bytes and signature.
fn state(height: i64) -> SignState {
    SignState {
        position: Some(Position {
            height,
            round: 0,
            step: Step::Precommit,
        }),
        sign_bytes: vec![0x5a; 140],
        signature: Some(vec![0xa5; 64]),
        owner: None,
    }
}

/// Rename without syncing the directory.
fn rename_no_dir_sync(path: &Path, text: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(text)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Rename without any sync.
fn rename_no_sync(path: &Path, text: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    File::create(&tmp)?.write_all(text)?;
    std::fs::rename(&tmp, path)
}

/// Times `writes` calls of `write`, alternating between two heights.
fn time(
    writes: usize,
    mut write: impl FnMut(i64) -> std::io::Result<()>,
) -> std::io::Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(writes);
    for i in 0..writes {
        let t0 = Instant::now();
        write(1_000_000 + i as i64)?;
        times.push(t0.elapsed());
    }
    times.sort();
    Ok(times)
}

/// Measures every scheme with `writes` writes in a directory under `root`
/// and prints p50/p99 per write.
pub fn run(root: Option<&Path>, writes: usize) -> Result<(), Box<dyn std::error::Error>> {
    let dir = match root {
        Some(root) => tempfile::tempdir_in(root)?,
        None => tempfile::tempdir()?,
    };
    // The exact text quorumkms writes, for the schemes written here.
    let texts: Vec<Vec<u8>> = [1, 2]
        .iter()
        .map(|h| {
            let file = StateFile::new(dir.path().join(format!("text-{h}.json")));
            file.save(&state(*h))?;
            Ok(std::fs::read(file.path())?)
        })
        .collect::<Result<_, Box<dyn std::error::Error>>>()?;
    let text = |h: i64| texts[(h % 2) as usize].as_slice();
    let path = |name: &str| dir.path().join(name);

    let mut rows: Vec<(&str, Vec<Duration>)> = Vec::new();
    let io = |e: quorumkms::watermark::StateFileError| std::io::Error::other(e.to_string());
    // As the granter does: the grant waits for the commit; the file is
    // settled after the verdict (untimed here, as it is off the path).
    let committed = StateFile::new(path("commit.json"));
    let mut times = Vec::with_capacity(writes);
    for i in 0..writes {
        let t0 = Instant::now();
        committed.commit(&state(1_000_000 + i as i64)).map_err(io)?;
        times.push(t0.elapsed());
        committed.settle().map_err(io)?;
    }
    times.sort();
    rows.push((
        "journal, 1 fdatasync; file settled after (quorumkms)",
        times,
    ));
    let saved = StateFile::new(path("save.json"));
    rows.push((
        "journal, fdatasync, file, fdatasync (one save)",
        time(writes, |h| saved.save(&state(h)).map_err(io))?,
    ));
    let renamed = path("rename.json");
    rows.push((
        "temp file, fsync, rename, dir fsync (before)",
        time(writes, |h| write_atomically(&renamed, text(h)))?,
    ));
    let renamed = path("rename-no-dir.json");
    rows.push((
        "temp file, fsync, rename (unsafe: old file may return)",
        time(writes, |h| rename_no_dir_sync(&renamed, text(h)))?,
    ));
    let in_place = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path("in-place.json"))?;
    rows.push((
        "file in place, 1 fdatasync (unsafe: torn write)",
        time(writes, |h| {
            in_place.write_all_at(text(h), 0)?;
            in_place.sync_data()
        })?,
    ));
    let unsynced = path("no-sync.json");
    rows.push((
        "temp file, rename, no sync (tmkms 0.15; not durable)",
        time(writes, |h| rename_no_sync(&unsynced, text(h)))?,
    ));

    println!(
        "state file writes in {} ({writes} per scheme, {} bytes):",
        dir.path().display(),
        texts[0].len()
    );
    println!("{:<56} {:>9} {:>9}", "scheme", "p50 ms", "p99 ms");
    for (name, times) in &rows {
        println!(
            "{name:<56} {:>9.3} {:>9.3}",
            percentile(times, 0.5).as_secs_f64() * 1e3,
            percentile(times, 0.99).as_secs_f64() * 1e3
        );
    }
    Ok(())
}
