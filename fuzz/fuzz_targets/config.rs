//! `herald.toml`: any text either becomes a `Config` or a `ConfigError`,
//! never a panic. A config that loads is also asked for its default id
//! authority and compared with itself, as a reload does.
#![no_main]

use std::path::Path;

use herald::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = Config::from_toml(Path::new("herald.toml"), text) {
        let _ = c.default_authority();
        assert!(
            c.restart_needed(&c).is_empty(),
            "an unchanged config asks for a restart"
        );
    }
});
