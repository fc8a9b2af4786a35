#![no_main]
//! libFuzzer harness: see `rota_fuzz::cluster_frame`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rota_fuzz::cluster_frame(data));
