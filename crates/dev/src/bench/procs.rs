//! Child processes of the harness: the sidecar (`wallet-balancer serve`, a
//! subprocess so its RSS and start-up are its own) and the Python clients.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use super::stats::Counts;
use wallet_balancer::server::SERVICE_NAME;
use wb_devnet::proxy::RpcProxy;

/// The last `limit` bytes of a log file.
fn tail(path: &Path, limit: usize) -> String {
    match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b[b.len().saturating_sub(limit)..]).into_owned(),
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// A running sidecar subprocess.
pub struct Sidecar {
    child: Child,
    pub pid: u32,
    pub addr: String,
    pub channel: Channel,
    /// From spawning the process to the first SERVING health answer.
    pub start_to_serving: Duration,
    log: PathBuf,
}

impl Sidecar {
    /// Spawns `bin serve --config config` and waits for SERVING (polling
    /// health every 2 ms).
    pub async fn spawn(
        bin: &Path,
        config: &Path,
        listen: &str,
        log: PathBuf,
    ) -> anyhow::Result<Sidecar> {
        let out =
            std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let started = Instant::now();
        let mut child = Command::new(bin)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .env_remove("WB_CONFIG")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawn {} serve", bin.display()))?;
        let pid = child.id().context("the sidecar has no pid")?;
        let addr = format!("http://{listen}");
        let deadline = started + Duration::from_secs(60);
        let channel = loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "the sidecar exited with {status} before SERVING:\n{}",
                    tail(&log, 4000)
                );
            }
            if let Ok(ch) = Channel::from_shared(addr.clone())?.connect().await {
                let serving = HealthClient::new(ch.clone())
                    .check(HealthCheckRequest {
                        service: SERVICE_NAME.into(),
                    })
                    .await
                    .is_ok_and(|r| r.into_inner().status == 1);
                if serving {
                    break ch;
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "the sidecar was not SERVING within 60 s:\n{}",
                    tail(&log, 4000)
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        Ok(Sidecar {
            child,
            pid,
            addr,
            channel,
            start_to_serving: started.elapsed(),
            log,
        })
    }

    /// (VmRSS, VmHWM) in kB, from /proc/<pid>/status.
    pub fn rss_kb(&self) -> (u64, u64) {
        rss_kb(self.pid)
    }

    /// SIGTERM (graceful), then SIGKILL after 20 s.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .await;
        match tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await {
            Ok(r) => {
                r?;
            }
            Err(_) => {
                eprintln!(
                    "bench: the sidecar ignored SIGTERM; killing it. Log:\n{}",
                    tail(&self.log, 2000)
                );
                self.child.kill().await?;
            }
        }
        Ok(())
    }
}

/// (VmRSS, VmHWM) in kB of `pid`; zeros when unreadable.
pub fn rss_kb(pid: u32) -> (u64, u64) {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return (0, 0);
    };
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A Python client run: it connects and warms up, prints `ready`, waits for
/// a line on stdin, runs, prints one JSON line and exits. Request counts
/// are taken between `go` and the answer, so start-up is not counted.
pub struct PyRun {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    log: PathBuf,
}

impl PyRun {
    pub async fn start(
        python: &Path,
        script: &Path,
        args: &[String],
        log: PathBuf,
    ) -> anyhow::Result<PyRun> {
        let err = std::fs::File::create(&log)?;
        let mut child = Command::new(python)
            .arg(script)
            .args(args)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawn {} {}", python.display(), script.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut run = PyRun {
            child,
            lines: BufReader::new(stdout).lines(),
            log,
        };
        let first = tokio::time::timeout(Duration::from_secs(60), run.lines.next_line()).await;
        match first {
            Ok(Ok(Some(l))) if l.trim() == "ready" => Ok(run),
            other => bail!(
                "{} did not get ready ({other:?}):\n{}",
                script.display(),
                tail(&run.log, 4000)
            ),
        }
    }

    /// Lets it run; its JSON answer and the proxy's counts meanwhile.
    pub async fn go(mut self, proxy: &RpcProxy) -> anyhow::Result<(serde_json::Value, Counts)> {
        let mut stdin = self.child.stdin.take().context("no stdin")?;
        let before = super::stats::snapshot(proxy);
        stdin.write_all(b"go\n").await?;
        stdin.flush().await?;
        let line = self.lines.next_line().await?;
        let after = super::stats::snapshot(proxy);
        let status = self.child.wait().await?;
        let Some(line) = line else {
            bail!(
                "the Python client ended without an answer ({status}):\n{}",
                tail(&self.log, 4000)
            );
        };
        if !status.success() {
            bail!(
                "the Python client failed ({status}):\n{}",
                tail(&self.log, 4000)
            );
        }
        let v: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("not JSON: {line}"))?;
        Ok((v, super::stats::delta(&before, &after)))
    }
}
