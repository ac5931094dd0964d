//! Runs command engines as child processes of the scanner: in the worktree, with a clean
//! environment (`PATH`, `LANG`, a private `HOME` and `TMPDIR`, and the engine's own `env`),
//! in a process group of their own so that a timeout or a cancel stops everything they started.

use std::process::Stdio;
use std::time::Duration;

use futures::future::BoxFuture;
use scanstream_platform::config::CommandEngineSettings;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::{CommandEngine, Executor, Exit, Invocation, LOG_TAIL_BYTES, Ran};
use crate::Error;

/// How long a version command may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(30);

/// Child processes on the scanner's own machine.
#[derive(Debug, Default)]
pub struct LocalExecutor;

impl LocalExecutor {
    fn command(argv: &[String], home: &std::path::Path) -> Option<Command> {
        let (program, args) = argv.split_first()?;
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LANG", "C.UTF-8")
            .env("HOME", home)
            .env("TMPDIR", home)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .process_group(0);
        Some(command)
    }
}

/// Stops a child's whole process group.
fn kill_group(child: &tokio::process::Child) {
    let group = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw);
    if let Some(group) = group {
        // The child leads its own group (`process_group(0)`).
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
}

impl Executor for LocalExecutor {
    fn run<'a>(
        &'a self,
        invocation: &'a Invocation,
        _engine: &'a CommandEngine,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<Ran, Error>> {
        Box::pin(async move {
            let home = invocation
                .output
                .with_file_name(format!("{}.home", invocation.engine));
            std::fs::create_dir_all(&home).map_err(|e| Error::io(&home, e))?;
            let Some(mut command) = Self::command(&invocation.argv, &home) else {
                return Ok(Ran::failed("the command line is empty"));
            };
            command
                .envs(invocation.env.iter().map(|(k, v)| (k, v)))
                .current_dir(&invocation.worktree)
                .stderr(Stdio::piped());
            if invocation.output_from_stdout {
                let file = std::fs::File::create(&invocation.output)
                    .map_err(|e| Error::io(&invocation.output, e))?;
                command.stdout(Stdio::from(file));
            } else {
                command.stdout(Stdio::piped());
            }
            let mut child = match command.spawn() {
                Ok(child) => child,
                Err(e) => {
                    return Ok(Ran::failed(format!(
                        "could not start {:?}: {}",
                        invocation.argv[0],
                        e.kind()
                    )));
                }
            };
            // Standard error (and standard output when it is not the SARIF) is the log: only
            // its tail is kept.
            let stderr = child.stderr.take();
            let stdout = child.stdout.take();
            let log = tokio::spawn(async move {
                let mut tail = Tail::default();
                let mut buf = vec![0u8; 8192];
                if let Some(mut stderr) = stderr {
                    while let Ok(n) = stderr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        tail.push(&buf[..n]);
                    }
                }
                tail
            });
            let drain = tokio::spawn(async move {
                if let Some(mut stdout) = stdout {
                    let mut sink = tokio::io::sink();
                    let _ = tokio::io::copy(&mut stdout, &mut sink).await;
                }
            });
            let exit = tokio::select! {
                status = child.wait() => match status {
                    Ok(status) => match status.code() {
                        Some(code) => Exit::Status(code),
                        None => Exit::Failed("it was stopped by a signal".into()),
                    },
                    Err(e) => Exit::Failed(format!("waiting for it failed: {}", e.kind())),
                },
                _ = tokio::time::sleep(invocation.timeout) => {
                    kill_group(&child);
                    let _ = child.wait().await;
                    Exit::TimedOut
                }
                _ = cancel.cancelled() => {
                    kill_group(&child);
                    let _ = child.wait().await;
                    return Err(Error::Cancelled);
                }
            };
            // Whatever the engine left running in its group goes with it.
            kill_group(&child);
            drain.abort();
            let log_tail = match tokio::time::timeout(Duration::from_secs(5), log).await {
                Ok(Ok(tail)) => tail.text(),
                _ => String::new(),
            };
            let _ = std::fs::remove_dir_all(&home);
            Ok(Ran { exit, log_tail })
        })
    }

    fn version<'a>(&'a self, engine: &'a CommandEngineSettings) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let home = tempfile::tempdir().ok()?;
            let mut command = Self::command(&engine.version_command, home.path())?;
            command
                .envs(
                    engine
                        .env
                        .iter()
                        .map(|(k, v)| (k, secrecy::ExposeSecret::expose_secret(v))),
                )
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            let output = tokio::time::timeout(VERSION_TIMEOUT, command.output())
                .await
                .ok()?
                .ok()?;
            if !output.status.success() {
                return None;
            }
            first_line(&output.stdout)
        })
    }
}

/// The first non-empty line of a version command's output, at most 80 characters, when it
/// names a version (holds a digit: a build without one prints a placeholder sentence).
pub fn first_line(bytes: &[u8]) -> Option<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .filter(|l| l.bytes().any(|b| b.is_ascii_digit()))
        .map(|l| l.chars().take(80).collect())
}

/// The last [`LOG_TAIL_BYTES`] of a stream.
#[derive(Default)]
struct Tail {
    bytes: Vec<u8>,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        if self.bytes.len() > 2 * LOG_TAIL_BYTES {
            self.bytes.drain(..self.bytes.len() - LOG_TAIL_BYTES);
        }
    }

    fn text(mut self) -> String {
        if self.bytes.len() > LOG_TAIL_BYTES {
            self.bytes.drain(..self.bytes.len() - LOG_TAIL_BYTES);
        }
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_one_short_line() {
        assert_eq!(first_line(b"\n  8.30.1 \nmore"), Some("8.30.1".into()));
        assert_eq!(first_line(b""), None);
        assert_eq!(first_line(b"version is set by build process"), None);
        assert_eq!(first_line(&[b'1'; 200]).map(|s| s.len()), Some(80));
    }
}
