#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| quorumkms::fuzzing::state_file(data));
