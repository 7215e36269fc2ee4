//! Test-only fault injection: `WB_FAULT_POINT=<name>` makes the process
//! abort (as a SIGKILL would stop it: no destructor, no flush) the first
//! time it reaches the named point. Used by the crash-recovery tests; inert
//! when the variable is unset (one cached lookup).
//!
//! Points: `after_plan` (conversions journaled, nothing signed),
//! `after_sign` (a signed transaction journaled, not broadcast),
//! `after_broadcast` (broadcast, receipt not awaited),
//! `after_confirm` (the swap confirmed and journaled, request not answered).

use std::sync::OnceLock;

pub const ENV: &str = "WB_FAULT_POINT";

fn configured() -> Option<&'static str> {
    static POINT: OnceLock<Option<String>> = OnceLock::new();
    POINT
        .get_or_init(|| std::env::var(ENV).ok().filter(|s| !s.is_empty()))
        .as_deref()
}

/// Aborts the process when `name` is the configured fault point.
pub fn point(name: &str) {
    if configured() == Some(name) {
        eprintln!("fault injection: aborting at {name}");
        std::process::abort();
    }
}
