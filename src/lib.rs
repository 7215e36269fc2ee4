//! wallet-balancer: a gRPC sidecar that keeps a trading wallet able to pay
//! for its trades in native ETH, converting just enough of its tokens
//! (WETH, USDC, USDT, DAI...) right before a trade.
//!
//! # Layout
//!
//! Data flows one way: edge -> use case -> read / decide / act / record.
//!
//! | module        | role                                                          | I/O          |
//! |---------------|---------------------------------------------------------------|--------------|
//! | [`api`]       | edge: gRPC handlers, validation, the one error -> Status map  | network in   |
//! | [`balancer`]  | use cases: EnsureEth and GetStatus over the roles below       | via roles    |
//! | [`chain`]     | read: pooled failover provider, one-call snapshot, feeds      | chain reads  |
//! | [`plan`]      | decide: the pure planner, integer money math                  | none         |
//! | [`exec`]      | act: the wallet owner per chain; approvals, unwraps, swaps; sign, send, confirm, replace | chain writes |
//! | [`journal`]   | record: requests, signed txs, conversion states, event log    | disk         |
//! | [`money`]     | integer money: wei, base units, fixed-point USD               | none         |
//! | [`config`]    | config file, env overrides, shipped chain presets             | file         |
//! | [`keys`]      | the wallet key: file or env, never printed                    | file         |
//! | [`server`]    | library-first server: bound listener + shutdown future        | network      |
//! | [`telemetry`] | logs, traces (OTLP, W3C context), Prometheus metrics, shutdown signal | network      |
//! | [`cli`]       | operator CLI: `status`, `ensure` (gRPC client, formatting)    | network      |
//! | [`pb`]        | generated protobuf types (only `api` and `cli` use them)      | -            |
#![forbid(unsafe_code)]
// Errors carry the structured figures that go into gRPC details; they are
// returned once per request, not in hot loops.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod balancer;
pub mod chain;
pub mod cli;
pub mod config;
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
