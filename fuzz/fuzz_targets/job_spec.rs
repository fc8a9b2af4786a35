#![no_main]
//! libFuzzer harness: see `rota_fuzz::job_spec`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rota_fuzz::job_spec(data));
