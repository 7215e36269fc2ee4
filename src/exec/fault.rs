//! Test-only fault injection: `WB_FAULT_POINT=<name>` makes the process
//! abort (as a SIGKILL would stop it: no destructor, no flush) the first
//! time it reaches the named point. Used by the crash-recovery tests.
//!
//! Compiled in only with the cargo feature `fault-injection` (enabled by
//! `cargo test --features fault-injection --test crash`, never by a normal
//! build): without it [`point`] is an empty inline function and the
//! variable is never read, so no environment variable can make the
//! production binary abort. With it, the variable is read once and cached.
//!
//! Points: `after_plan` (conversions journaled, nothing signed),
//! `after_sign` (a signed transaction journaled, not broadcast),
//! `after_broadcast` (broadcast, receipt not awaited),
//! `after_confirm` (the swap confirmed and journaled, request not answered),
//! and `transition:N`: the N-th journaled state change of a transaction
//! (counted from 1 in the process), so that a test can crash at every
//! transition of the state machine in turn.

pub const ENV: &str = "WB_FAULT_POINT";

#[cfg(feature = "fault-injection")]
fn configured() -> Option<&'static str> {
    use std::sync::OnceLock;
    static POINT: OnceLock<Option<String>> = OnceLock::new();
    POINT
        .get_or_init(|| std::env::var(ENV).ok().filter(|s| !s.is_empty()))
        .as_deref()
}

/// Aborts the process when `name` is the configured fault point.
#[cfg(feature = "fault-injection")]
pub fn point(name: &str) {
    if configured() == Some(name) {
        eprintln!("fault injection: aborting at {name}");
        std::process::abort();
    }
}

/// A transaction's state change was journaled: aborts at the configured
/// `transition:N`.
#[cfg(feature = "fault-injection")]
pub fn transition() {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
    if let Some(want) = configured().and_then(|p| p.strip_prefix("transition:"))
        && want.parse::<u64>().ok() == Some(n)
    {
        eprintln!("fault injection: aborting at transition:{n}");
        std::process::abort();
    }
}

/// Nothing: fault injection is not compiled in (feature `fault-injection`).
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_name: &str) {}

/// Nothing: fault injection is not compiled in (feature `fault-injection`).
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn transition() {}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    /// Every point the crate calls.
    const POINTS: [&str; 5] = [
        "after_plan",
        "after_sign",
        "after_broadcast",
        "after_confirm_receipt",
        "after_confirm",
    ];

    /// Run by [`wb_fault_point_aborts_only_with_the_feature`] in a child
    /// process with `WB_FAULT_POINT` set (the crate forbids `unsafe`, so the
    /// variable cannot be set in this process).
    #[test]
    #[ignore = "a child process of wb_fault_point_aborts_only_with_the_feature"]
    fn reach_every_point() {
        for p in POINTS {
            point(p);
        }
        println!("reached every fault point");
    }

    #[test]
    fn wb_fault_point_aborts_only_with_the_feature() {
        for p in POINTS {
            let out = Command::new(std::env::current_exe().unwrap())
                .args(["exec::fault::tests::reach_every_point", "--exact"])
                .args(["--ignored", "--nocapture", "--test-threads=1"])
                .env(ENV, p)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            if cfg!(feature = "fault-injection") {
                assert!(!out.status.success(), "{p}: did not abort: {stdout}");
                assert!(
                    stderr.contains(&format!("fault injection: aborting at {p}")),
                    "{p}: {stderr}"
                );
            } else {
                assert!(out.status.success(), "{p}: {stdout}\n{stderr}");
                assert!(
                    stdout.contains("reached every fault point") && stdout.contains("1 passed"),
                    "{p}: the child did not run the points: {stdout}"
                );
            }
        }
    }
}
