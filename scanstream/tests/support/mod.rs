//! What the tests of the built binary share: `scanstream up` started on the test's broker and
//! registry, and its log.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use scanstream_testcontainers::TestScope;

pub mod api;

/// A running `scanstream up` and the URL it printed.
pub struct Up {
    pub child: Child,
    pub url: String,
    pub data_dir: PathBuf,
    /// Every line it printed on stdout so far.
    printed: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Up {
    pub fn start(scope: &TestScope, config: &Path, data_dir: &Path) -> Up {
        Self::start_with(scope, config, data_dir, &[])
    }

    /// [`Up::start`] with extra environment variables (a crash point, say).
    pub fn start_with(
        scope: &TestScope,
        config: &Path,
        data_dir: &Path,
        env: &[(&str, &str)],
    ) -> Up {
        let mut command = Command::new(env!("CARGO_BIN_EXE_scanstream"));
        command
            .args(["--config"])
            .arg(config)
            .args(["--bootstrap", &scope.endpoints.bootstrap_servers])
            .args(["--registry", &scope.endpoints.registry_url])
            .args(["--topic-prefix", &scope.topic_prefix])
            .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("SCANSTREAM__TOPICS__REPLICATION_FACTOR", "1");
        Self::spawn(command, data_dir, env)
    }

    /// `scanstream up --secure` with its own secured local cluster (free ports), configured by
    /// `env` only (a `--config` file would count as a configured cluster).
    pub fn start_secure(data_dir: &Path, env: &[(&str, &str)]) -> Up {
        let mut command = Command::new(env!("CARGO_BIN_EXE_scanstream"));
        command
            .args(["up", "--secure", "--listen", "127.0.0.1:0"])
            .args(["--kafka-port", "0", "--registry-port", "0", "--data-dir"])
            .arg(data_dir);
        Self::spawn(command, data_dir, env)
    }

    fn spawn(mut command: Command, data_dir: &Path, env: &[(&str, &str)]) -> Up {
        let mut child = command
            .env("SCANSTREAM__TOPICS__PARTITIONS", "2")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start scanstream up");
        let stdout = child.stdout.take().expect("no stdout");
        let (sender, receiver) = mpsc::channel();
        let printed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = printed.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line.clone());
                if let Some(url) = line.trim().strip_prefix("HTTP API:") {
                    let _ = sender.send(url.trim().to_owned());
                }
            }
        });
        // The URL, or an empty one when a crash point ended the process before it printed it
        // (stdout closes: the reader thread drops the sender).
        let url = match receiver.recv_timeout(Duration::from_secs(180)) {
            Ok(url) => url,
            Err(mpsc::RecvTimeoutError::Disconnected)
                if env.iter().any(|(k, _)| *k == "SCANSTREAM_CRASH_AT") =>
            {
                String::new()
            }
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "scanstream up never printed its URL; log:\n{}",
                    log(data_dir)
                )
            }
        };
        Up {
            child,
            url,
            data_dir: data_dir.to_owned(),
            printed,
        }
    }

    /// Waits up to `timeout` for the process to end by itself (a crash point); its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The value of the startup message's line `label:` (`Schema registry`, say).
    pub fn printed(&self, label: &str) -> Option<String> {
        let prefix = format!("{label}:");
        self.printed
            .lock()
            .unwrap()
            .iter()
            .find_map(|l| l.trim().strip_prefix(&prefix).map(|v| v.trim().to_owned()))
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("api-token"))
            .expect("up wrote no token")
            .trim()
            .to_owned()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn log(data_dir: &Path) -> String {
    let text = std::fs::read_to_string(data_dir.join("logs/scanstream.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}
