//! The devnet fixture's error type.

use std::path::PathBuf;

/// Boxed source error (alloy transport/contract/signer errors, ...).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong while standing up or driving the devnet.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// `deploy/devnet/setup.sh` has not been run (or node_modules/build is incomplete).
    #[error(
        "devnet fixture not set up: {path} is missing. Run `bash {setup}` first \
         (needs node >= 20 and npm; it installs the pinned anvil + Uniswap artifacts and compiles \
         our contracts)",
        path = path.display(),
        setup = setup_script.display()
    )]
    SetupMissing {
        /// The file that was expected.
        path: PathBuf,
        /// The setup script to run.
        setup_script: PathBuf,
    },

    /// A contract artifact exists but could not be used.
    #[error("bad contract artifact {path}: {reason}", path = path.display())]
    Artifact {
        /// The artifact file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The node process could not be started or did not become ready.
    #[error("devnet node: {0}")]
    Node(String),

    /// `WB_DEVNET_NODE` (or a `--node` option) names no node implementation this knows.
    #[error("unknown devnet node {0:?}: expected `anvil` or `hardhat` (env WB_DEVNET_NODE)")]
    UnknownNode(String),

    /// A control the running node does not have (e.g. a state dump on Hardhat).
    #[error("{what} is not available on the {node} node")]
    Unsupported {
        /// The node that runs.
        node: super::NodeKind,
        /// The missing control.
        what: &'static str,
    },

    /// An RPC call, contract call or signing step failed.
    #[error("{context}: {source}")]
    Chain {
        /// What was being done (e.g. "deploy UniswapV2Router02").
        context: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },

    /// A transaction was mined but reverted.
    #[error("transaction `{context}` reverted (tx {tx_hash}): {detail}")]
    Reverted {
        /// What the transaction was for.
        context: String,
        /// Its hash.
        tx_hash: String,
        /// Gas used and the revert reason found by replaying it, if any.
        detail: String,
    },

    /// The deployed market is not in the expected state.
    #[error("devnet invariant violated: {0}")]
    Invariant(String),

    /// `stop_node` was called while the node is not running (or vice versa).
    #[error("devnet node is {0}")]
    State(&'static str),
}

impl DevnetError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn chain<E>(context: impl Into<String>, source: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        Self::Chain {
            context: context.into(),
            source: Box::new(source),
        }
    }
}
