//! Replays the fuzz corpus: every file in `fuzz/corpus/<target>/` (valid
//! examples of each format, and every input that once crashed a target)
//! goes through the entry function its fuzz target calls
//! (`quorumkms::fuzzing`), so a fixed crash stays fixed without libFuzzer.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn replay(name: &str) {
    let (_, target) = quorumkms::fuzzing::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no fuzz target {name}"));
    let dir = corpus_root().join("corpus").join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let bytes = std::fs::read(path).expect("read corpus file");
            catch_unwind(AssertUnwindSafe(|| target(&bytes))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(failed.is_empty(), "{name} panicked on {failed:#?}");
}

macro_rules! replay_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                replay(stringify!($name));
            }
        )*

        /// Every target in `quorumkms::fuzzing::TARGETS` has a replay test
        /// here and a fuzz target in `fuzz/`.
        #[test]
        fn every_target_is_replayed_and_built() {
            let here = [$(stringify!($name)),*];
            let manifest = std::fs::read_to_string(corpus_root().join("Cargo.toml"))
                .expect("fuzz/Cargo.toml");
            for (name, _) in quorumkms::fuzzing::TARGETS {
                assert!(here.contains(name), "{name} has no replay test");
                assert!(
                    manifest.contains(&format!("name = \"{name}\"")),
                    "{name} is not a binary in fuzz/Cargo.toml"
                );
                let source = corpus_root().join("fuzz_targets").join(format!("{name}.rs"));
                assert!(source.exists(), "{} is missing", source.display());
            }
            assert_eq!(here.len(), quorumkms::fuzzing::TARGETS.len());
        }
    };
}

replay_tests!(
    privval,
    secret_connection,
    cluster_raft,
    cluster_forward,
    cluster_admin,
    cluster_threshold,
    state_file,
    tmkms,
    interchange,
    config,
);
