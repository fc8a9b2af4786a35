#![no_main]
//! libFuzzer harness: see `rota_fuzz::schedule`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rota_fuzz::schedule(data));
