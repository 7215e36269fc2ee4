//! wallet-balancer: a gRPC sidecar that keeps a trading wallet able to pay
//! for its trades in native ETH, converting just enough of its tokens
//! (WETH, USDC, USDT, DAI...) right before a trade.
//!
//! # Layout
//!
//! Data flows one way: edge -> use case -> read / decide / act / record.
//! Imports go one way too: a module uses only modules of lower layers
//! (`tests/layers.rs` checks every `crate::` path), lowest first:
//!
//! `money` < `domain` < `plan`, `telemetry` < `config` < `keys` <
//! `chain`, `journal` < `exec` < `balancer` < `pb` (generated) < `api` <
//! `server` < `cli`
//!
//! | module        | layer                                                          | I/O          |
//! |---------------|----------------------------------------------------------------|--------------|
//! | [`money`]     | integer money: wei, base units, fixed-point USD                | none         |
//! | [`domain`]    | the data every layer speaks: reports, snapshot, conversion events, the protocol-neutral `Failure` | none |
//! | [`plan`]      | decide: the pure planner, integer money math                   | none         |
//! | [`telemetry`] | logs, traces (OTLP, W3C context), Prometheus metrics, redaction, shutdown signal | network |
//! | [`config`]    | config file, env overrides, shipped chain presets              | file         |
//! | [`keys`]      | the wallet's signer (a local key, or AWS KMS / GCP KMS / Turnkey: the key never in the process; retries, timeouts) and the bearer token | file, KMS |
//! | [`chain`]     | read: pooled failover provider, one-call snapshot, feeds, quotes | chain reads |
//! | [`journal`]   | record: requests, signed txs, conversion states, event log     | disk         |
//! | [`exec`]      | act: `Executor::execute` (approvals, unwraps, swaps; sign, send, confirm, replace) and `Executor::recover` | chain writes |
//! | [`balancer`]  | use cases: EnsureEth (idempotency, the per-chain wallet owner: queue, batching, spend window, settlement) and GetStatus; errors -> `Failure` | via the layers below |
//! | [`api`]       | edge: gRPC handlers, validation, the one `Failure` -> `Status` map | network in |
//! | [`server`]    | library-first server: bound listener + shutdown future         | network      |
//! | [`cli`]       | operator CLI: `status`, `ensure`, `conversions`, `watch`, `check-config`, `install-secret` | network |
//! | [`pb`]        | generated protobuf types (`api`, `server`, `cli`)               | -            |
//!
//! The devnet fixture and the developer tools (demo, benchmarks) are other
//! crates of the workspace (`crates/devnet`, `crates/dev`): the product
//! neither contains nor depends on them.
#![forbid(unsafe_code)]
// Errors carry the structured figures that go into gRPC details; they are
// returned once per request, not in hot loops.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod balancer;
pub mod chain;
pub mod cli;
pub mod config;
pub mod domain;
pub mod exec;
pub mod journal;
pub mod keys;
pub mod money;
pub mod plan;
pub mod server;
pub mod telemetry;

/// Generated from `proto/walletbalancer/v1/wallet_balancer.proto`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("walletbalancer.v1");

    /// Encoded descriptor set, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("walletbalancer_descriptor");
}
