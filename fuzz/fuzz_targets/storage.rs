#![no_main]
//! libFuzzer harness: see `rota_fuzz::storage`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rota_fuzz::storage(data));
