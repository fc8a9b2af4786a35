#![no_main]
//! libFuzzer harness: see `rota_fuzz::gossip`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rota_fuzz::gossip(data));
