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

#[test]
fn every_preset_parses_with_checksummed_distinct_addresses() {
    for (name, text) in PRESETS {
        let cfg = format!(
            "[chains.{name}]\npreset = \"{name}\"\nrpc_urls = [\"http://127.0.0.1:8545\"]\n"
        );
        let c = Config::from_toml(&cfg).unwrap_or_else(|e| panic!("preset {name}: {e}"));
        let ch = c.chain(name).unwrap();
        assert!(!ch.tokens.is_empty(), "{name}: no tokens");
        assert!(!ch.venues.is_empty(), "{name}: no venues");
        assert!(
            ch.tokens.iter().any(|t| t.is_weth),
            "{name}: WETH not listed"
        );
        // Receipts are looked for once per block: each preset states
        // its chain's block time.
        let want_ms = match *name {
            "arbitrum" => 250,
            "base" | "optimism" => 2_000,
            "ethereum" => 12_000,
            other => panic!("unknown preset {other}"),
        };
        assert_eq!(ch.block_time, Duration::from_millis(want_ms), "{name}");

        // Every 0x-address literal in the file is EIP-55 checksummed.
        for word in text.split(|c: char| !c.is_ascii_alphanumeric()) {
            if word.len() == 42 && word.starts_with("0x") {
                Address::parse_checksummed(word, None)
                    .unwrap_or_else(|e| panic!("{name}: {word} not checksummed: {e}"));
            }
        }
        // Distinct roles. The only sharing allowed: WETH is listed as a
        // token at the `weth` address and priced by the ETH/USD feed.
        let mut roles = vec![
            ("multicall3", ch.multicall3),
            ("weth", ch.weth),
            ("eth_usd_feed", ch.eth_usd_feed),
        ];
        roles.extend(
            ch.sequencer_uptime_feed
                .map(|a| ("sequencer_uptime_feed", a)),
        );
        for t in &ch.tokens {
            if t.is_weth {
                assert_eq!(
                    t.usd_feed, ch.eth_usd_feed,
                    "{name}: WETH priced by another feed"
                );
                continue;
            }
            roles.push(("token", t.address));
            roles.push(("usd_feed", t.usd_feed));
        }
        for v in &ch.venues {
            roles.push(("router", v.kind.router()));
            if let VenueKind::UniswapV3 { quoter, .. } = &v.kind {
                roles.push(("quoter", *quoter));
            }
        }
        let mut seen = BTreeMap::new();
        for (role, a) in roles {
            if let Some(prev) = seen.insert(a, role) {
                panic!("{name}: {a} is both {prev} and {role}");
            }
        }
    }
}

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

#[test]
fn the_signer_is_local_unless_said_and_each_remote_one_needs_its_section() {
    let c = Config::from_toml(MINIMAL).unwrap();
    assert_eq!(c.wallet.signer, SignerConfig::Local);
    assert_eq!(c.wallet.signing, SigningPolicy::default());

    let aws = format!(
        "[wallet]\nsigner = \"aws_kms\"\nsign_max_attempts = 6\nsign_timeout_ms = 20000\n\
         [wallet.aws_kms]\nkey_id = \"arn:aws:kms:eu-west-1:111122223333:key/k\"\n\
         region = \"eu-west-1\"\nendpoint_url = \"https://vpce-1.kms.eu-west-1.vpce.amazonaws.com/secret\"\n{MINIMAL}"
    );
    let c = Config::from_toml(&aws).unwrap();
    let SignerConfig::AwsKms(a) = &c.wallet.signer else {
        panic!("{:?}", c.wallet.signer)
    };
    assert_eq!(a.key_id, "arn:aws:kms:eu-west-1:111122223333:key/k");
    assert_eq!(a.region.as_deref(), Some("eu-west-1"));
    assert_eq!(c.wallet.signing.max_attempts, 6);
    assert_eq!(c.wallet.signing.total_timeout, Duration::from_secs(20));
    // check-config shows the section, the endpoint reduced to its host.
    let shown = c.effective().to_string();
    assert!(shown.contains("signer = \"aws_kms\""), "{shown}");
    assert!(shown.contains("[wallet.aws_kms]"), "{shown}");
    assert!(!shown.contains("/secret"), "{shown}");
    // The same from the environment (a Kubernetes Secret or ConfigMap).
    let c = Config::from_toml_with_env(
        MINIMAL,
        [
            ("WB__WALLET__SIGNER".to_string(), "aws_kms".to_string()),
            ("WB__WALLET__AWS_KMS__KEY_ID".to_string(), "k".to_string()),
        ],
    )
    .unwrap();
    assert_eq!(c.wallet.signer.name(), "aws_kms");

    let key = |toml: &str| Config::from_toml(toml).unwrap_err().key;
    assert_eq!(
        key(&format!("[wallet]\nsigner = \"aws_kms\"\n{MINIMAL}")),
        "wallet.aws_kms"
    );
    assert_eq!(
        key(&format!(
            "[wallet]\nsigner = \"aws_kms\"\n[wallet.aws_kms]\nregion = \"x\"\n{MINIMAL}"
        )),
        "wallet.aws_kms.key_id"
    );
    assert_eq!(
        key(&format!(
            "[wallet]\nsigner = \"aws_kms\"\nprivate_key_file = \"/k\"\n[wallet.aws_kms]\nkey_id = \"k\"\n{MINIMAL}"
        )),
        "wallet.private_key_file"
    );
    assert_eq!(
        key(&format!("[wallet]\nsigner = \"vault\"\n{MINIMAL}")),
        "wallet.signer"
    );
    assert_eq!(
        key(&format!("[wallet.aws_kms]\nkey_id = \"k\"\n{MINIMAL}")),
        "wallet.aws_kms"
    );
    assert_eq!(
        key(&format!(
            "[wallet]\nsigner = \"gcp_kms\"\n[wallet.gcp_kms]\nproject_id = \"p\"\nlocation = \"global\"\nkey_ring = \"r\"\nkey_id = \"k\"\nkey_version = 0\n{MINIMAL}"
        )),
        "wallet.gcp_kms.key_version"
    );
    assert_eq!(
        key(&format!(
            "[wallet]\nsign_attempt_timeout_ms = 5000\nsign_timeout_ms = 1000\n{MINIMAL}"
        )),
        "wallet.sign_timeout_ms"
    );
    // A backend not compiled in is refused before anything starts.
    let turnkey = format!(
        "[wallet]\nsigner = \"turnkey\"\n[wallet.turnkey]\norganization_id = \"o\"\n\
         address = \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\napi_key_file = \"/k\"\n{MINIMAL}"
    );
    let built_with_turnkey = cfg!(feature = "turnkey");
    match Config::from_toml(&turnkey) {
        Ok(c) => assert!(built_with_turnkey, "{:?}", c.wallet.signer),
        Err(e) => {
            assert!(!built_with_turnkey, "{e}");
            assert_eq!(e.key, "wallet.signer");
            assert!(e.message.contains("cargo feature \"turnkey\""), "{e}");
        }
    }
}
