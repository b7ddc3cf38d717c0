#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dits_fuzz::project_files(data));
