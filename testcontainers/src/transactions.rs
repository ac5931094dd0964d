//! Finds and aborts hanging transactions on the local broker with Kafka's own
//! `TransactionsCommand` (what `kafka-transactions.sh` runs; KIP-664).
//!
//! Why the local cluster needs it: when its one combined broker/controller is killed while a
//! transaction is prepared but its markers are not all written, the restarted coordinator sends
//! the missing markers while the controller still holds the dead incarnation's registration.
//! When the controller then fences that registration the partitions have no leader for a moment,
//! and the coordinator drops the markers as if the partitions had been deleted and completes the
//! transaction. The partitions that missed their marker keep an open transaction nobody will
//! end: their last stable offset stays behind it, and consumers reading committed data (all of
//! ours) never read past it. Aborting it is the remedy Kafka provides.

use std::path::PathBuf;
use std::process::Command;

use crate::{Error, Result};

/// A transaction open on a partition that its coordinator no longer knows as open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HangingTransaction {
    pub topic: String,
    pub partition: i32,
    pub producer_id: i64,
    pub producer_epoch: i32,
    /// The offset of its first record: consumers reading committed data stop here.
    pub start_offset: i64,
}

/// Runs `TransactionsCommand` against the local broker (blocking: each call starts a JVM,
/// about a second of CPU).
#[derive(Debug, Clone)]
pub struct TransactionTool {
    pub(crate) java: PathBuf,
    pub(crate) classpath: String,
    pub(crate) bootstrap_servers: String,
    /// The broker's node id (one combined node).
    pub(crate) broker_id: u32,
    /// The admin's client settings on a secured cluster.
    pub(crate) command_config: Option<PathBuf>,
}

impl TransactionTool {
    /// Transactions open for over a minute on any partition of the broker that their
    /// coordinator does not hold open (the command asks the coordinator of each candidate, so
    /// a long transaction still in progress is not reported).
    pub fn find_hanging(&self) -> Result<Vec<HangingTransaction>> {
        let broker = self.broker_id.to_string();
        let out = self.run(&[
            "find-hanging",
            "--broker-id",
            &broker,
            "--max-transaction-timeout",
            "1",
        ])?;
        Ok(parse_hanging(&out))
    }

    /// Aborts `hanging`: writes an abort marker to its partition, so consumers read past it
    /// (its records are skipped by consumers that read committed data).
    pub fn abort(&self, hanging: &HangingTransaction) -> Result<()> {
        self.run(&[
            "abort",
            "--topic",
            &hanging.topic,
            "--partition",
            &hanging.partition.to_string(),
            "--start-offset",
            &hanging.start_offset.to_string(),
        ])
        .map(drop)
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        let output = Command::new(&self.java)
            .args(["-Xmx256m", "-Xshare:auto", "-cp"])
            .arg(&self.classpath)
            .arg("org.apache.kafka.tools.TransactionsCommand")
            .args(["--bootstrap-server", &self.bootstrap_servers])
            .args(
                self.command_config
                    .iter()
                    .flat_map(|c| [std::ffi::OsStr::new("--command-config"), c.as_os_str()]),
            )
            .args(args)
            .output()
            .map_err(Error::io("running Kafka's TransactionsCommand"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            let said = String::from_utf8_lossy(&output.stderr);
            let last = said.lines().rev().find(|l| !l.trim().is_empty());
            Err(Error::Config(format!(
                "TransactionsCommand {} exited with {}: {}",
                args.first().copied().unwrap_or_default(),
                output.status,
                last.unwrap_or("no output")
            )))
        }
    }
}

/// Reads `find-hanging`'s table: a header line, then one tab-separated row per transaction
/// (topic, partition, producer id, producer epoch, coordinator epoch, start offset, …). Lines
/// that do not parse (log output, the header) are skipped.
fn parse_hanging(out: &str) -> Vec<HangingTransaction> {
    out.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('\t').map(str::trim).collect();
            if cells.len() < 6 {
                return None;
            }
            Some(HangingTransaction {
                topic: cells[0].to_owned(),
                partition: cells[1].parse().ok()?,
                producer_id: cells[2].parse().ok()?,
                producer_epoch: cells[3].parse().ok()?,
                start_offset: cells[5].parse().ok()?,
            })
        })
        .filter(|h| !h.topic.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_find_hanging_table_is_read_row_by_row() {
        let out = "Topic       \tPartition\tProducerId\tProducerEpoch\tCoordinatorEpoch\tStartOffset\tLastTimestamp\tDuration(min)\t\n\
                   scans.events\t4        \t5         \t0            \t-1              \t0          \t1795810579640\t4            \t\n\
                   scans.commands\t11\t7\t2\t3\t1200\t1795810579640\t2\t\n";
        assert_eq!(
            parse_hanging(out),
            vec![
                HangingTransaction {
                    topic: "scans.events".into(),
                    partition: 4,
                    producer_id: 5,
                    producer_epoch: 0,
                    start_offset: 0,
                },
                HangingTransaction {
                    topic: "scans.commands".into(),
                    partition: 11,
                    producer_id: 7,
                    producer_epoch: 2,
                    start_offset: 1200,
                },
            ]
        );
    }

    #[test]
    fn an_empty_table_or_stray_lines_find_nothing() {
        let out = "Topic\tPartition\tProducerId\tProducerEpoch\tCoordinatorEpoch\tStartOffset\tLastTimestamp\tDuration(min)\t\n\
                   SLF4J: some warning\n";
        assert!(parse_hanging(out).is_empty());
    }
}
