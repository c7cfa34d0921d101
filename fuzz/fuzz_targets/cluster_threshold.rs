#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| quorumkms::fuzzing::cluster_threshold(data));
