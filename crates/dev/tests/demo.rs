//! The demo as a newcomer sees it (`scripts/demo`): the story's steps in
//! order, amounts people read (no raw base units), the stream's events, the
//! refusal with its reason, the reserve arithmetic without rounding
//! artefacts, and no log lines unless asked for.

use std::process::Command;

fn demo(extra: &[&str]) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wb-dev"));
    cmd.arg("demo")
        .arg("--config-out")
        .arg(dir.path().join("config.toml"))
        .arg("--key-out")
        .arg(dir.path().join("wallet.key"))
        .args(extra)
        .env_remove("RUST_LOG");
    let out = cmd.output().expect("wb-dev demo");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "exit {}\n{stdout}\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

/// Decimal runs of `min` digits or more outside hex words (`0x...`).
fn long_numbers(text: &str, min: usize) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.starts_with("0x") && w.len() >= min && w.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_demo_tells_the_story_in_human_amounts_and_quietly() {
    let (out, err) = demo(&[]);
    // The steps, in order.
    let steps = [
        "== The wallet (GetStatus)",
        "== A trade needs 0.1 ETH",
        "PLANNED",
        "SUBMITTED",
        "CONFIRMED",
        "CONVERTED: need 0.105 ETH",
        "== A trade the wallet cannot cover",
        "refused, INSUFFICIENT_FUNDS: shortage ",
        "nothing was sent",
        "== The wallet after",
    ];
    let mut from = 0;
    for step in steps {
        let at = out[from..]
            .find(step)
            .unwrap_or_else(|| panic!("{step:?} missing (or out of order):\n{out}"));
        from += at + step.len();
    }
    // The events are the conversion's, as a person reads them.
    let confirmed = out
        .lines()
        .find(|l| l.contains("demo-trade-1#") && l.contains("CONFIRMED"))
        .unwrap_or_else(|| panic!("no CONFIRMED event:\n{out}"));
    assert!(
        confirmed.contains(" DAI -> 0.076667 ETH via uniswap-v3"),
        "{confirmed}"
    );
    // $240 of WETH above a $100 reserve: $140, not $139.99999999.
    let weth = out
        .lines()
        .find(|l| l.trim_start().starts_with("WETH"))
        .unwrap();
    assert!(weth.contains("convertible $  140.00000000"), "{weth}");
    assert!(!out.contains("139.99999999"), "{out}");
    assert!(!out.contains("base units"), "{out}");
    assert_eq!(
        long_numbers(&out, 12),
        Vec::<String>::new(),
        "raw base units:\n{out}"
    );
    // Quiet: the sidecar's and the devnet's logs stay out of the story.
    assert!(!err.contains(" INFO "), "logs in a quiet demo:\n{err}");
    assert!(
        out.lines().all(|l| l.len() < 220),
        "a line too long for a terminal:\n{out}"
    );
}

#[test]
fn verbose_shows_the_logs() {
    let (_, err) = demo(&["--verbose"]);
    assert!(err.contains(" INFO "), "{err}");
    assert!(err.contains("conversion state change"), "{err}");
}
