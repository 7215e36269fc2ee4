//! The node child process (anvil or the Hardhat node): spawn on loopback, wait until it
//! listens, kill.

use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::error::DevnetError;

/// How long the node may take to say it listens.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Anvil's default dev mnemonic; passed explicitly so the dev keys below are guaranteed (the
/// Hardhat node gets the same one from `deploy/devnet/hardhat.config.js`).
pub(crate) const MNEMONIC: &str = "test test test test test test test test test test test junk";

/// Env var choosing the node implementation: `anvil` (default) or `hardhat`.
pub const ENV_DEVNET_NODE: &str = "WB_DEVNET_NODE";

/// Which node implementation runs the devnet.
///
/// anvil is kind to its callers: `eth_call` sees the real base fee, future nonces queue. The
/// Hardhat node (npm `hardhat` 2.x, EDR inside) follows geth where they differ: `eth_call` runs
/// with BASEFEE 0, errors are worded its own way, a nonce gap is refused while automining, and
/// it has no `anvil_reorg` nor state dump/load (tests needing those skip on it, saying why).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NodeKind {
    /// `anvil` from the pinned npm package `@foundry-rs/anvil-linux-amd64`.
    #[default]
    Anvil,
    /// `hardhat node` from the pinned npm package `hardhat` (2.x), configured by
    /// `deploy/devnet/hardhat.config.js`.
    Hardhat,
}

impl NodeKind {
    /// [`ENV_DEVNET_NODE`] if set and not empty, else anvil. An unknown name is an error (a
    /// typo must not silently test anvil again).
    pub fn from_env() -> Result<Self, DevnetError> {
        match std::env::var(ENV_DEVNET_NODE) {
            Ok(v) if !v.trim().is_empty() => v.parse(),
            Ok(_) | Err(std::env::VarError::NotPresent) => Ok(Self::Anvil),
            Err(std::env::VarError::NotUnicode(v)) => {
                Err(DevnetError::UnknownNode(v.to_string_lossy().into_owned()))
            }
        }
    }

    /// `"anvil"` or `"hardhat"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Anvil => "anvil",
            Self::Hardhat => "hardhat",
        }
    }

    /// The JSON-RPC method of this node for a node control named without its prefix:
    /// `control("setNextBlockBaseFeePerGas")` is `anvil_setNextBlockBaseFeePerGas` on anvil and
    /// `hardhat_setNextBlockBaseFeePerGas` on Hardhat. Only for controls both nodes have under
    /// their own prefix; anvil also accepts most `hardhat_*` names.
    pub fn control(self, name: &str) -> String {
        format!("{}_{name}", self.name())
    }

    /// The argument of `evm_setIntervalMining` for a block every `secs` seconds: anvil takes
    /// seconds, Hardhat milliseconds.
    pub fn interval_mining_arg(self, secs: u64) -> u64 {
        match self {
            Self::Anvil => secs,
            Self::Hardhat => secs.saturating_mul(1000),
        }
    }
}

impl fmt::Display for NodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for NodeKind {
    type Err = DevnetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "anvil" => Ok(Self::Anvil),
            "hardhat" => Ok(Self::Hardhat),
            _ => Err(DevnetError::UnknownNode(s.to_string())),
        }
    }
}

/// How to start one node process.
#[derive(Debug, Clone)]
pub(crate) struct NodeCommand {
    pub(crate) kind: NodeKind,
    /// anvil's binary, or `node_modules/.bin/hardhat`.
    pub(crate) bin: PathBuf,
    /// The fixture dir (`deploy/devnet`): Hardhat's working directory and config.
    pub(crate) dir: PathBuf,
}

/// A running node process. Killed (SIGKILL) when dropped.
#[derive(Debug)]
pub(crate) struct NodeProcess {
    child: Child,
    port: u16,
}

impl NodeProcess {
    /// Starts the node on `127.0.0.1:port` (0 = let it pick a free port) with automine, chain
    /// id `chain_id` (anvil; Hardhat's is in its config), the dev accounts of [`MNEMONIC`],
    /// appending its output to `log_path`, and waits until it accepts connections.
    pub(crate) async fn spawn(
        how: &NodeCommand,
        port: u16,
        chain_id: u64,
        log_path: &Path,
    ) -> Result<Self, DevnetError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .map_err(|e| DevnetError::io(format!("open {}", log_path.display()), e))?;
        let start_offset = log
            .metadata()
            .map_err(|e| DevnetError::io(format!("stat {}", log_path.display()), e))?
            .len();
        let log_err = log
            .try_clone()
            .map_err(|e| DevnetError::io(format!("dup {}", log_path.display()), e))?;

        let mut cmd = Command::new(&how.bin);
        match how.kind {
            NodeKind::Anvil => {
                cmd.arg("--host")
                    .arg("127.0.0.1")
                    .arg("--port")
                    .arg(port.to_string())
                    .arg("--chain-id")
                    .arg(chain_id.to_string())
                    .arg("--mnemonic")
                    .arg(MNEMONIC)
                    .arg("--accounts")
                    .arg("2")
                    .env("FOUNDRY_DISABLE_NIGHTLY_WARNING", "1");
            }
            NodeKind::Hardhat => {
                cmd.arg("--config")
                    .arg(hardhat_config(&how.dir))
                    .arg("node")
                    .arg("--hostname")
                    .arg("127.0.0.1")
                    .arg("--port")
                    .arg(port.to_string())
                    .current_dir(&how.dir)
                    // Never ask about anonymous usage data.
                    .env("HARDHAT_DISABLE_TELEMETRY_PROMPT", "true");
            }
        }
        cmd.env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| DevnetError::Node(format!("cannot execute {}: {e}", how.bin.display())))?;

        let started = Instant::now();
        loop {
            let out = read_from(log_path, start_offset)?;
            if let Some(addr) = out.lines().find_map(|l| listen_address(how.kind, l)) {
                let addr: SocketAddr = addr.parse().map_err(|e| {
                    DevnetError::Node(format!("cannot parse listen address {addr:?}: {e}"))
                })?;
                return Ok(Self {
                    child,
                    port: addr.port(),
                });
            }
            if let Some(status) = child
                .try_wait()
                .map_err(|e| DevnetError::io(format!("wait for {}", how.kind), e))?
            {
                return Err(DevnetError::Node(format!(
                    "{} exited during start-up ({status}); output ({}):\n{}",
                    how.kind,
                    log_path.display(),
                    tail(&out, 2000)
                )));
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                let _ = child.start_kill();
                return Err(DevnetError::Node(format!(
                    "{} not listening after {STARTUP_TIMEOUT:?}; output ({}):\n{}",
                    how.kind,
                    log_path.display(),
                    tail(&out, 2000)
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The TCP port the node listens on.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Kills the process and reaps it.
    pub(crate) async fn kill(mut self) -> Result<(), DevnetError> {
        self.child
            .kill()
            .await
            .map_err(|e| DevnetError::io("kill the node", e))
    }

    /// `Some(status)` if the process has exited.
    pub(crate) fn try_exited(&mut self) -> Result<Option<ExitStatus>, DevnetError> {
        self.child
            .try_wait()
            .map_err(|e| DevnetError::io("wait for the node", e))
    }

    /// The OS process id, if still known.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// The `host:port` in the line a node prints once it listens: anvil's `Listening on
/// 127.0.0.1:8545`, Hardhat's `Started HTTP and WebSocket JSON-RPC server at
/// http://127.0.0.1:8545/`.
fn listen_address(kind: NodeKind, line: &str) -> Option<&str> {
    let line = line.trim();
    match kind {
        NodeKind::Anvil => line.strip_prefix("Listening on").map(str::trim),
        NodeKind::Hardhat => line
            .strip_prefix("Started HTTP and WebSocket JSON-RPC server at http://")
            .map(|rest| rest.trim_end_matches('/')),
    }
}

/// Reads `path` from byte `offset` on (lossy UTF-8).
fn read_from(path: &Path, offset: u64) -> Result<String, DevnetError> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| DevnetError::io(format!("open {}", path.display()), e))?;
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| DevnetError::io(format!("seek {}", path.display()), e))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)
        .map_err(|e| DevnetError::io(format!("read {}", path.display()), e))?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The last `max` bytes of the log at `path` (empty if unreadable).
pub(crate) fn log_tail(path: &Path, max: usize) -> String {
    read_from(path, 0)
        .map(|s| tail(&s, max).to_string())
        .unwrap_or_default()
}

/// The last `max` bytes of `s` (on a char boundary).
fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Where the anvil binary of the pinned npm package lives under the fixture dir.
pub(crate) fn anvil_in_package(dir: &Path) -> PathBuf {
    dir.join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
}

/// The Hardhat CLI of the pinned npm package under the fixture dir.
pub(crate) fn hardhat_in_package(dir: &Path) -> PathBuf {
    dir.join("node_modules/.bin/hardhat")
}

/// The Hardhat node's config under the fixture dir.
pub(crate) fn hardhat_config(dir: &Path) -> PathBuf {
    dir.join("hardhat.config.js")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_kind_names_and_controls() {
        assert_eq!("anvil".parse::<NodeKind>().unwrap(), NodeKind::Anvil);
        assert_eq!(" Hardhat ".parse::<NodeKind>().unwrap(), NodeKind::Hardhat);
        assert!("geth".parse::<NodeKind>().is_err());
        assert_eq!(
            NodeKind::Anvil.control("setNextBlockBaseFeePerGas"),
            "anvil_setNextBlockBaseFeePerGas"
        );
        assert_eq!(NodeKind::Hardhat.control("setCode"), "hardhat_setCode");
        assert_eq!(NodeKind::Anvil.interval_mining_arg(2), 2);
        assert_eq!(NodeKind::Hardhat.interval_mining_arg(2), 2000);
    }

    #[test]
    fn listen_lines_of_both_nodes() {
        assert_eq!(
            listen_address(NodeKind::Anvil, "Listening on 127.0.0.1:8545"),
            Some("127.0.0.1:8545")
        );
        assert_eq!(
            listen_address(
                NodeKind::Hardhat,
                "Started HTTP and WebSocket JSON-RPC server at http://127.0.0.1:46309/"
            ),
            Some("127.0.0.1:46309")
        );
        assert_eq!(
            listen_address(NodeKind::Hardhat, "Listening on 1.2.3.4:5"),
            None
        );
    }
}
