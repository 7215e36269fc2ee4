//! The anvil child process: spawn on loopback, wait until it listens, kill.

use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::error::DevnetError;

/// How long anvil may take to print `Listening on ...`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Anvil's default dev mnemonic; passed explicitly so the dev keys below are guaranteed.
pub(crate) const MNEMONIC: &str = "test test test test test test test test test test test junk";

/// A running anvil process. Killed (SIGKILL) when dropped.
#[derive(Debug)]
pub(crate) struct AnvilNode {
    child: Child,
    port: u16,
}

impl AnvilNode {
    /// Starts anvil on `127.0.0.1:port` (0 = let anvil pick a free port) with automine, chain id
    /// `chain_id`, appending its output to `log_path`, and waits until it accepts connections.
    pub(crate) async fn spawn(
        bin: &Path,
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

        let mut cmd = Command::new(bin);
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
            .env("NO_COLOR", "1")
            .env("FOUNDRY_DISABLE_NIGHTLY_WARNING", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| DevnetError::Node(format!("cannot execute {}: {e}", bin.display())))?;

        let started = Instant::now();
        loop {
            let out = read_from(log_path, start_offset)?;
            if let Some(addr) = out
                .lines()
                .find_map(|l| l.trim().strip_prefix("Listening on"))
            {
                let addr: SocketAddr = addr.trim().parse().map_err(|e| {
                    DevnetError::Node(format!("cannot parse listen address {addr:?}: {e}"))
                })?;
                return Ok(Self {
                    child,
                    port: addr.port(),
                });
            }
            if let Some(status) = child
                .try_wait()
                .map_err(|e| DevnetError::io("wait for anvil", e))?
            {
                return Err(DevnetError::Node(format!(
                    "exited during start-up ({status}); output ({}):\n{}",
                    log_path.display(),
                    tail(&out, 2000)
                )));
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                let _ = child.start_kill();
                return Err(DevnetError::Node(format!(
                    "not listening after {STARTUP_TIMEOUT:?}; output ({}):\n{}",
                    log_path.display(),
                    tail(&out, 2000)
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The TCP port anvil listens on.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Kills the process and reaps it.
    pub(crate) async fn kill(mut self) -> Result<(), DevnetError> {
        self.child
            .kill()
            .await
            .map_err(|e| DevnetError::io("kill anvil", e))
    }

    /// `Some(status)` if the process has exited.
    pub(crate) fn try_exited(&mut self) -> Result<Option<ExitStatus>, DevnetError> {
        self.child
            .try_wait()
            .map_err(|e| DevnetError::io("wait for anvil", e))
    }

    /// The OS process id, if still known.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
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
