//! The configuration loader: arbitrary text through what `switchyard check` runs (TOML
//! parsed by figment, `validate` with its sanity checks, then the snapshot start-up builds
//! from it). The answer must be a configuration or an error naming a key and a problem;
//! never a panic.
//!
//! `check` reads a file and applies `SWITCHYARD_*` overrides (`Config::load`); this target
//! parses the text the same way without the file (`Config::from_toml`). The sanity checks read
//! /proc/meminfo and /sys (cheap, no writes); the API token comes from the environment here,
//! so that a fuzzed `token_file` (/dev/zero, a FIFO) is never opened.

#![no_main]

use std::sync::Once;

use libfuzzer_sys::fuzz_target;
use switchyard::config::Config;
use switchyard::lb::Snapshot;

fuzz_target!(|data: &[u8]| {
    static ENV: Once = Once::new();
    ENV.call_once(|| {
        // SAFETY: set once, before anything reads the environment, on libFuzzer's one thread.
        unsafe { std::env::set_var("SWITCHYARD_API_TOKEN", "fuzz-token-0123456789abcdef") };
    });
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml(text) {
        Ok(c) => {
            // As `check` does: what start-up builds from it.
            if let Err(e) = Snapshot::build(&c, &vec![[0; 6]; c.interfaces.len()]) {
                assert!(!e.to_string().is_empty());
            }
        }
        Err(e) => {
            assert!(!e.key.is_empty(), "an error without a key: {e}");
            assert!(!e.problem.is_empty(), "an error without a problem: {e}");
        }
    }
});
