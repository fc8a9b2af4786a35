#![no_main]
//! libFuzzer harness: see `rota_fuzz::http_router`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rota_fuzz::http_router(data));
