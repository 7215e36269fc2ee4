//! Config tests: parsing, validation, presets, environment overrides.

use super::*;

const MINIMAL: &str = r#"
[chains.devnet]
chain_id = 31337
rpc_urls = ["http://127.0.0.1:8545"]
multicall3 = "0xcA11bde05977b3631167028862bE2a173976CA11"
weth = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
eth_usd_feed = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
"#;

#[test]
fn minimal_config_gets_the_write_up_defaults() {
    let c = Config::from_toml(MINIMAL).unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:50051");
    assert_eq!(
        c.policy.gas_reserve_wei,
        U256::from(5_000_000_000_000_000u64)
    );
    assert_eq!(c.policy.slippage_bps, 200);
    let ch = c.chain("devnet").unwrap();
    assert_eq!(ch.chain_id, 31337);
    assert_eq!(ch.confirmations, 1);
    assert_eq!(ch.block_time, Duration::from_secs(1));
}

#[test]
fn errors_name_the_key() {
    let bad = MINIMAL.replace("chain_id = 31337", "chain_id = 31337\nfoo = 1");
    let e = Config::from_toml(&bad).unwrap_err();
    assert_eq!(e.key, "chains.devnet.foo", "{e}");

    let bad = MINIMAL.replace(
        "0xcA11bde05977b3631167028862bE2a173976CA11",
        "0xCA11bde05977b3631167028862bE2a173976CA11",
    );
    let e = Config::from_toml(&bad).unwrap_err();
    assert_eq!(e.key, "chains.devnet.multicall3", "{e}");

    let e = Config::from_toml(&format!("[policy]\nslippage_bps = 0\n{MINIMAL}")).unwrap_err();
    assert_eq!(e.key, "policy.slippage_bps");

    let e = Config::from_toml(&format!("[policy]\nbuffer_usd = \"-5\"\n{MINIMAL}")).unwrap_err();
    assert_eq!(e.key, "policy.buffer_usd");

    let e = Config::from_toml(&format!("[server]\nlisten = \"nowhere\"\n{MINIMAL}")).unwrap_err();
    assert_eq!(e.key, "server.listen");

    let e = Config::from_toml(&MINIMAL.replace(
        "rpc_urls = [\"http://127.0.0.1:8545\"]",
        "rpc_urls = [\"wss://key@x\"]",
    ))
    .unwrap_err();
    assert_eq!(e.key, "chains.devnet.rpc_urls[0]");
    assert!(!e.to_string().contains("key@"), "URL echoed: {e}");

    let e = Config::from_toml("").unwrap_err();
    assert_eq!(e.key, "chains");

    let e = Config::from_toml(
        &MINIMAL.replace("chain_id = 31337", "chain_id = 31337\nblock_time_ms = 10"),
    )
    .unwrap_err();
    assert_eq!(e.key, "chains.devnet.block_time_ms", "{e}");

    let e =
        Config::from_toml(&format!("[policy]\napproval_usd = \"5001\"\n{MINIMAL}")).unwrap_err();
    assert_eq!(e.key, "policy.approval_usd", "{e}");
}

#[test]
fn approvals_are_exact_unless_a_grant_is_configured() {
    assert_eq!(Config::from_toml(MINIMAL).unwrap().approval_usd, Usd::ZERO);
    let c = Config::from_toml(&format!("[policy]\napproval_usd = \"250\"\n{MINIMAL}")).unwrap();
    assert_eq!(c.approval_usd, Usd::from_dollars(250));
}

#[test]
fn telemetry_section() {
    let c = Config::from_toml(MINIMAL).unwrap();
    assert!(!c.telemetry.log_json);
    assert!(c.telemetry.otlp_endpoint.is_none() && c.telemetry.metrics_listen.is_none());
    let c = Config::from_toml(&format!(
        "[telemetry]\nlog_json = true\notlp_endpoint = \"http://otel:4317\"\nmetrics_listen = \"0.0.0.0:9464\"\ntrace_filter = \"wallet_balancer=trace\"\n{MINIMAL}"
    ))
    .unwrap();
    assert!(c.telemetry.log_json);
    assert_eq!(
        c.telemetry.otlp_endpoint.as_deref(),
        Some("http://otel:4317")
    );
    assert_eq!(c.telemetry.metrics_listen.unwrap().port(), 9464);
    for (line, key) in [
        (
            "otlp_endpoint = \"https://u:SECRET@otel:4317\"",
            "telemetry.otlp_endpoint",
        ),
        ("metrics_listen = \"nowhere\"", "telemetry.metrics_listen"),
        ("trace_filter = \"=[\"", "telemetry.trace_filter"),
        ("nope = 1", "telemetry.nope"),
    ] {
        let e = Config::from_toml(&format!("[telemetry]\n{line}\n{MINIMAL}")).unwrap_err();
        assert_eq!(e.key, key, "{e}");
        assert!(!e.to_string().contains("SECRET"), "{e}");
    }
}

#[test]
fn env_overrides_single_keys() {
    let env = vec![
        (
            "WB__SERVER__LISTEN".to_string(),
            "127.0.0.1:6000".to_string(),
        ),
        (
            "WB__CHAINS__DEVNET__RPC_URLS".to_string(),
            r#"["http://127.0.0.1:1", "http://127.0.0.1:2"]"#.to_string(),
        ),
        ("WB__POLICY__SLIPPAGE_BPS".to_string(), "50".to_string()),
        ("UNRELATED".to_string(), "x".to_string()),
    ];
    let c = Config::from_toml_with_env(MINIMAL, env).unwrap();
    assert_eq!(c.server.listen.port(), 6000);
    assert_eq!(c.policy.slippage_bps, 50);
    assert_eq!(c.chain("devnet").unwrap().rpc_urls.len(), 2);
}

// The shipped presets: tests/presets.rs (every address pinned with its
// source, every feed's heartbeat, the rules).

#[test]
fn the_effective_config_is_a_config_that_means_the_same() {
    let text = format!(
        "[policy]\nbuffer_usd = \"7\"\n[telemetry]\nlog_json = true\n{}",
        MINIMAL.replace(
            "rpc_urls = [\"http://127.0.0.1:8545\"]",
            "rpc_urls = [\"http://127.0.0.1:8545\", \"https://rpc.example.com/v2/SECRET\"]"
        )
    );
    let c = Config::from_toml(&text).unwrap();
    let effective = c.effective();
    let printed = toml::to_string(&effective).unwrap();
    assert!(!printed.contains("SECRET"), "{printed}");
    // Every default is written out; read back, it is the same config.
    assert_eq!(effective["policy"]["slippage_bps"].as_integer(), Some(200));
    assert_eq!(effective["telemetry"]["log_json"].as_bool(), Some(true));
    let again = Config::from_toml(&printed).unwrap();
    assert_eq!(again.effective(), effective);
}

// -- Every error names its line and column, or its variable --------------

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `text` (as the file `c.toml`) with `vars`: the error, its message.
fn fails(text: &str, vars: &[(&str, &str)]) -> (ConfigError, String) {
    let e = Config::parse("c.toml", text, env(vars)).unwrap_err();
    let msg = e.to_string();
    (e, msg)
}

fn at_line(e: &ConfigError) -> (usize, usize) {
    match &e.location {
        Some(Location::File {
            file,
            line: Some(lc),
        }) if file == "c.toml" => *lc,
        other => panic!("not placed in the file: {other:?} ({e})"),
    }
}

#[test]
fn a_toml_syntax_error_names_its_line_and_column() {
    let text = format!("{MINIMAL}\n[policy]\nbuffer_usd = \"5\nslippage_bps = 100\n");
    let (e, msg) = fails(&text, &[]);
    let line = MINIMAL.lines().count() + 3;
    assert_eq!(at_line(&e).0, line, "{msg}");
    assert!(
        msg.starts_with(&format!("c.toml, line {line}, column ")),
        "{msg}"
    );
    assert!(msg.contains("not valid TOML"), "{msg}");
}

#[test]
fn a_type_error_in_the_file_names_the_key_and_its_line() {
    let text = format!("[policy]\nbuffer_usd = \"5\"\nslippage_bps = \"abc\"\n{MINIMAL}");
    let (e, msg) = fails(&text, &[]);
    assert_eq!(e.key, "policy.slippage_bps", "{msg}");
    assert_eq!(at_line(&e), (3, 1), "{msg}");
    assert!(
        msg.contains("c.toml, line 3, column 1: config key `policy.slippage_bps`"),
        "{msg}"
    );

    // Inside a chain, and inside the second token of a list.
    let text = MINIMAL.replace("chain_id = 31337", "chain_id = \"x\"");
    let (e, msg) = fails(&text, &[]);
    assert_eq!(
        (e.key.as_str(), at_line(&e)),
        ("chains.devnet.chain_id", (3, 1)),
        "{msg}"
    );
    let token = |symbol: &str, decimals: &str| {
        format!(
            "\n[[chains.devnet.tokens]]\nsymbol = \"{symbol}\"\naddress = \"0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512\"\ndecimals = {decimals}\nusd_feed = \"0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512\"\nmin_reserve_usd = \"1\"\npriority = 1\n"
        )
    };
    let text = format!("{MINIMAL}{}{}", token("A", "6"), token("B", "\"six\""));
    let (e, msg) = fails(&text, &[]);
    assert_eq!(e.key, "chains.devnet.tokens[1].decimals", "{msg}");
    let line = text
        .lines()
        .position(|l| l == "decimals = \"six\"")
        .unwrap()
        + 1;
    assert_eq!(at_line(&e), (line, 1), "{msg}");
}

#[test]
fn unknown_and_missing_keys_name_their_line() {
    let text = format!("[policy]\nbuffer_usd = \"5\"\nslipage_bps = 100\n{MINIMAL}");
    let (e, msg) = fails(&text, &[]);
    assert_eq!(
        (e.key.as_str(), at_line(&e)),
        ("policy.slipage_bps", (3, 1)),
        "{msg}"
    );

    // Missing: placed at the table that lacks it.
    let text = MINIMAL.replace("chain_id = 31337\n", "");
    let (e, msg) = fails(&text, &[]);
    assert_eq!(e.key, "chains.devnet.chain_id", "{msg}");
    assert_eq!(at_line(&e).0, 2, "{msg}");
}

#[test]
fn a_validation_error_names_the_line_of_its_key() {
    let text = format!("[policy]\nslippage_bps = 0\n{MINIMAL}");
    let (e, msg) = fails(&text, &[]);
    assert_eq!(
        (e.key.as_str(), at_line(&e)),
        ("policy.slippage_bps", (2, 1)),
        "{msg}"
    );
    let text = MINIMAL.replace(
        "0xcA11bde05977b3631167028862bE2a173976CA11",
        "0xCA11bde05977b3631167028862bE2a173976CA11",
    );
    let (e, msg) = fails(&text, &[]);
    assert_eq!(
        (e.key.as_str(), at_line(&e)),
        ("chains.devnet.multicall3", (5, 1)),
        "{msg}"
    );
    // No chain at all: the file is named.
    let (e, msg) = fails("[policy]\nslippage_bps = 100\n", &[]);
    assert_eq!(e.key, "chains");
    assert!(msg.starts_with("c.toml: config key `chains`"), "{msg}");
}

#[test]
fn an_override_error_names_its_variable() {
    let (e, msg) = fails(MINIMAL, &[("WB__POLICY__SLIPPAGE_BPS", "abc")]);
    assert_eq!(e.key, "policy.slippage_bps", "{msg}");
    assert_eq!(
        e.location,
        Some(Location::Env("WB__POLICY__SLIPPAGE_BPS".into()))
    );
    assert!(
        msg.starts_with(
            "environment variable WB__POLICY__SLIPPAGE_BPS: config key `policy.slippage_bps`"
        ),
        "{msg}"
    );

    // A value that types but does not validate, and one that overrides the file.
    let text = format!("[policy]\nslippage_bps = 100\n{MINIMAL}");
    let (e, msg) = fails(&text, &[("WB__POLICY__SLIPPAGE_BPS", "0")]);
    assert_eq!(
        e.location,
        Some(Location::Env("WB__POLICY__SLIPPAGE_BPS".into())),
        "{msg}"
    );
    let (e, msg) = fails(MINIMAL, &[("WB__CHAINS__DEVNET__CONFIRMATIONS", "many")]);
    assert_eq!(
        e.location,
        Some(Location::Env("WB__CHAINS__DEVNET__CONFIRMATIONS".into())),
        "{msg}"
    );
    let (e, msg) = fails(MINIMAL, &[("WB__POLICY", "1")]);
    assert_eq!(
        e.location,
        Some(Location::Env("WB__POLICY".into())),
        "{msg}"
    );
    let (e, msg) = fails(MINIMAL, &[("WB__POLICY____X", "1")]);
    assert_eq!(
        e.location,
        Some(Location::Env("WB__POLICY____X".into())),
        "{msg}"
    );
}

#[test]
fn a_plain_rpc_url_from_a_secret_is_a_list_of_one_and_never_echoed() {
    let url = "https://arb-mainnet.example.com/v2/SECRETKEY";
    let c = Config::parse(
        "c.toml",
        MINIMAL,
        env(&[("WB__CHAINS__DEVNET__RPC_URLS", url)]),
    )
    .unwrap();
    assert_eq!(c.chain("devnet").unwrap().rpc_urls[0].as_str(), url);
    let c = Config::from_toml(
        &MINIMAL.replace("[\"http://127.0.0.1:8545\"]", "\"http://127.0.0.1:8545\""),
    )
    .unwrap();
    assert_eq!(c.chain("devnet").unwrap().rpc_urls.len(), 1);

    let (e, msg) = fails(
        MINIMAL,
        &[("WB__CHAINS__DEVNET__RPC_URLS", "SECRETKEY-not-a-url")],
    );
    assert_eq!(e.key, "chains.devnet.rpc_urls[0]", "{msg}");
    assert_eq!(
        e.location,
        Some(Location::Env("WB__CHAINS__DEVNET__RPC_URLS".into())),
        "{msg}"
    );
    assert!(!msg.contains("SECRETKEY"), "{msg}");
    let (e, msg) = fails(MINIMAL, &[("WB__CHAINS__DEVNET__RPC_URLS", "5")]);
    assert_eq!(
        e.location,
        Some(Location::Env("WB__CHAINS__DEVNET__RPC_URLS".into())),
        "{msg}"
    );
    assert!(msg.contains("expected a URL or a list of URLs"), "{msg}");
}

#[test]
fn booleans_are_1_0_true_false_from_variables_and_files() {
    for (v, want) in [
        ("1", true),
        ("0", false),
        ("true", true),
        ("false", false),
        ("yes", true),
        ("off", false),
        ("\"TRUE\"", true),
    ] {
        let c = Config::parse("c.toml", MINIMAL, env(&[("WB__TELEMETRY__LOG_JSON", v)])).unwrap();
        assert_eq!(c.telemetry.log_json, want, "{v}");
    }
    let c = Config::from_toml(&format!("[telemetry]\nlog_json = 1\n{MINIMAL}")).unwrap();
    assert!(c.telemetry.log_json);
    let (e, msg) = fails(MINIMAL, &[("WB__TELEMETRY__LOG_JSON", "maybe")]);
    assert_eq!(
        e.location,
        Some(Location::Env("WB__TELEMETRY__LOG_JSON".into())),
        "{msg}"
    );
    assert!(msg.contains("\"maybe\" is not a boolean"), "{msg}");
    let (e, msg) = fails(&format!("[telemetry]\nlog_json = 2\n{MINIMAL}"), &[]);
    assert_eq!(
        (e.key.as_str(), at_line(&e)),
        ("telemetry.log_json", (2, 1)),
        "{msg}"
    );
}

// -- Feeds: a staleness limit and a pair per feed --------------------------

/// MINIMAL with `chain` keys added and these `[[tokens]]` (TOML lines).
fn with_tokens(chain: &str, tokens: &[&str]) -> String {
    let mut text = MINIMAL.replace(
        "eth_usd_feed = \"0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512\"\n",
        &format!("eth_usd_feed = \"0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512\"\n{chain}"),
    );
    text.push_str(
        "[[chains.devnet.venues]]\nkind = \"uniswap_v2\"\nname = \"v2\"\n\
         router = \"0x0000000000000000000000000000000000000100\"\n",
    );
    for t in tokens {
        text.push_str(&format!("[[chains.devnet.tokens]]\n{t}\n"));
    }
    text
}

const WETH: &str = "symbol = \"WETH\"\naddress = \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\n\
    decimals = 18\nusd_feed = \"0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512\"\n\
    min_reserve_usd = \"1\"\npriority = 1";
const USDC: &str = "symbol = \"USDC\"\naddress = \"0x0000000000000000000000000000000000000a01\"\n\
    decimals = 6\nusd_feed = \"0x0000000000000000000000000000000000000f01\"\n\
    min_reserve_usd = \"1\"\npriority = 2";
const USDT: &str = "symbol = \"USDT\"\naddress = \"0x0000000000000000000000000000000000000a02\"\n\
    decimals = 6\nusd_feed = \"0x0000000000000000000000000000000000000f02\"\n\
    min_reserve_usd = \"1\"\npriority = 3";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn an_old_config_keeps_its_one_limit_for_every_feed() {
    // No per-feed key: the chain-wide feed_max_age_secs (default 86400)
    // holds for every feed, as before.
    let c = Config::from_toml(&with_tokens("", &[WETH, USDC])).unwrap();
    let ch = c.chain("devnet").unwrap();
    assert_eq!(ch.feed_max_age, secs(86_400));
    assert_eq!(ch.eth_usd_feed_max_age, secs(86_400));
    assert!(ch.tokens.iter().all(|t| t.feed_max_age == secs(86_400)));

    let c = Config::from_toml(&with_tokens("feed_max_age_secs = 600\n", &[WETH, USDC])).unwrap();
    let ch = c.chain("devnet").unwrap();
    assert_eq!(ch.eth_usd_feed_max_age, secs(600));
    assert!(ch.tokens.iter().all(|t| t.feed_max_age == secs(600)));
    assert_eq!(ch.feed_max_age_of(ch.eth_usd_feed), secs(600));
}

#[test]
fn each_feed_has_its_own_limit() {
    let usdc = format!("{USDC}\nfeed_max_age_secs = 95040");
    let c = Config::from_toml(&with_tokens(
        "eth_usd_feed_max_age_secs = 1500\nfeed_max_age_secs = 7000\n",
        &[WETH, &usdc, USDT],
    ))
    .unwrap();
    let ch = c.chain("devnet").unwrap();
    let limit = |sym: &str| ch.tokens.iter().find(|t| t.symbol == sym).unwrap();
    assert_eq!(ch.eth_usd_feed_max_age, secs(1_500));
    // WETH is priced by the ETH/USD feed: that feed's limit.
    assert_eq!(limit("WETH").feed_max_age, secs(1_500));
    assert_eq!(limit("USDC").feed_max_age, secs(95_040));
    // No limit of its own: the chain's default.
    assert_eq!(limit("USDT").feed_max_age, secs(7_000));
    // What the snapshot asks, by feed address.
    assert_eq!(ch.feed_max_age_of(ch.eth_usd_feed), secs(1_500));
    assert_eq!(ch.feed_max_age_of(limit("USDC").usd_feed), secs(95_040));
    assert_eq!(ch.feed_max_age_of(limit("USDT").usd_feed), secs(7_000));
    assert_eq!(ch.feed_max_age_of(Address::repeat_byte(9)), secs(7_000));
    // The ETH/USD feed's own limit, with no token priced by it.
    let c = Config::from_toml(&with_tokens(
        "eth_usd_feed_max_age_secs = 1500
",
        &[USDC],
    ))
    .unwrap();
    let ch = c.chain("devnet").unwrap();
    assert_eq!(ch.feed_max_age_of(ch.eth_usd_feed), secs(1_500));
}

#[test]
fn one_feed_gets_one_limit_and_every_limit_is_positive() {
    // WETH's feed is the ETH/USD feed: a second, different limit is refused.
    let weth = format!("{WETH}\nfeed_max_age_secs = 3600");
    let e = Config::from_toml(&with_tokens("eth_usd_feed_max_age_secs = 1500\n", &[&weth]))
        .unwrap_err();
    assert_eq!(e.key, "chains.devnet.tokens[0].feed_max_age_secs", "{e}");
    assert!(e.message.contains("eth_usd_feed_max_age_secs"), "{e}");
    // The same limit twice is fine.
    let weth = format!("{WETH}\nfeed_max_age_secs = 1500");
    Config::from_toml(&with_tokens("eth_usd_feed_max_age_secs = 1500\n", &[&weth])).unwrap();
    // Two tokens on one feed: the second inherits the first's limit, and may
    // not contradict it.
    let usdc = format!("{USDC}\nfeed_max_age_secs = 95040");
    let twin = USDT.replace(
        "0x0000000000000000000000000000000000000f02",
        "0x0000000000000000000000000000000000000f01",
    );
    let c = Config::from_toml(&with_tokens("", &[&usdc, &twin])).unwrap();
    assert_eq!(
        c.chain("devnet").unwrap().tokens[1].feed_max_age,
        secs(95_040)
    );
    let twin = format!("{twin}\nfeed_max_age_secs = 100");
    let e = Config::from_toml(&with_tokens("", &[&usdc, &twin])).unwrap_err();
    assert_eq!(e.key, "chains.devnet.tokens[1].feed_max_age_secs", "{e}");
    assert!(e.message.contains("tokens[0].feed_max_age_secs"), "{e}");

    for (chain, token, key) in [
        (
            "eth_usd_feed_max_age_secs = 0\n",
            USDC.to_string(),
            "chains.devnet.eth_usd_feed_max_age_secs",
        ),
        (
            "feed_max_age_secs = 0\n",
            USDC.to_string(),
            "chains.devnet.feed_max_age_secs",
        ),
        (
            "",
            format!("{USDC}\nfeed_max_age_secs = 0"),
            "chains.devnet.tokens[0].feed_max_age_secs",
        ),
    ] {
        let e = Config::from_toml(&with_tokens(chain, &[&token])).unwrap_err();
        assert_eq!(e.key, key, "{e}");
    }
}

#[test]
fn each_feed_must_describe_its_token_pair() {
    let usdt0 = USDT.replace("symbol = \"USDT\"", "symbol = \"USDT0\"")
        + "\nfeed_description = \"USDT / USD\"";
    let c = Config::from_toml(&with_tokens("", &[WETH, USDC, &usdt0])).unwrap();
    let ch = c.chain("devnet").unwrap();
    let want: Vec<_> = ch
        .tokens
        .iter()
        .map(|t| t.feed_description.as_str())
        .collect();
    // WETH: the ETH/USD pair; others: `<SYMBOL> / USD`, or what is set.
    assert_eq!(want, ["ETH / USD", "USDC / USD", "USDT / USD"]);
    let e = Config::from_toml(&with_tokens(
        "",
        &[&format!("{USDC}\nfeed_description = \" \"")],
    ))
    .unwrap_err();
    assert_eq!(e.key, "chains.devnet.tokens[0].feed_description", "{e}");
}

#[test]
fn a_feed_describes_its_pair_up_to_case_and_spaces() {
    assert!(feed_describes("ETH / USD", "ETH / USD"));
    assert!(feed_describes("ETH / USD", "eth/usd"));
    assert!(feed_describes("USDT / USD", " USDT  /  USD "));
    assert!(feed_describes("USD₮0 / USD", "usd₮0 / usd"));
    // Another pair, another quote, a prefix or nothing at all: not it.
    assert!(!feed_describes("USDT / USD", "DAI / USD"));
    assert!(!feed_describes("USDT / USD", "USDT / ETH"));
    assert!(!feed_describes("USDC / USD", "USDC.e / USD"));
    assert!(!feed_describes("ETH / USD", "WETH / USD"));
    assert!(!feed_describes("ETH / USD", ""));
    assert!(!feed_describes("", ""));
    assert!(!feed_describes(" ", " "));
}

#[test]
fn the_effective_config_carries_every_feed_limit_and_pair() {
    let usdc = format!("{USDC}\nfeed_max_age_secs = 95040");
    let text = with_tokens("eth_usd_feed_max_age_secs = 1500\n", &[WETH, &usdc, USDT]);
    let c = Config::from_toml(&text).unwrap();
    let e = c.effective();
    let ch = &e["chains"]["devnet"];
    assert_eq!(ch["eth_usd_feed_max_age_secs"].as_integer(), Some(1_500));
    assert_eq!(ch["feed_max_age_secs"].as_integer(), Some(86_400));
    let t = ch["tokens"].as_array().unwrap();
    let limits: Vec<_> = t
        .iter()
        .map(|t| t["feed_max_age_secs"].as_integer().unwrap())
        .collect();
    assert_eq!(limits, [1_500, 95_040, 86_400]);
    assert_eq!(t[0]["feed_description"].as_str(), Some("ETH / USD"));
    let again = Config::from_toml(&toml::to_string(&e).unwrap()).unwrap();
    assert_eq!(again.effective(), e);
}
