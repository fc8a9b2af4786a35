#![no_main]
//! libFuzzer harness: see `rota_fuzz::core_inputs`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rota_fuzz::core_inputs(data));
