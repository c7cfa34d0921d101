#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| quorumkms::fuzzing::secret_connection(data));
