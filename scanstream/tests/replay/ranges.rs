//! `scanstream replay` to standard output: time and offset ranges on every partition, filters,
//! the line format, and bad input.

use std::collections::BTreeSet;

use scanstream_contracts::Topic;
use scanstream_contracts::event::ScanEvent;

use crate::helpers::{
    Fixture, PARTITIONS, T0, lines, positions, rfc3339, scanstream, stdout, ten_per_partition,
};

#[tokio::test]
async fn time_ranges_are_inclusive_from_and_exclusive_to_on_every_partition() {
    let f = Fixture::new("replay-range").await;
    let produced = ten_per_partition(&f).await;

    // [T0+3 s, T0+7 s): timestamps 3, 4, 5 and 6 s of each partition, offsets 3..=6.
    let out = scanstream(
        &f.scope,
        &[
            "replay",
            "--topic",
            "scans.events",
            "--from",
            &rfc3339(T0 + 3000),
            "--to",
            &rfc3339(T0 + 7000),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = lines(&stdout(&out));
    let expected: BTreeSet<(i32, i64)> = (0..PARTITIONS)
        .flat_map(|p| (3..=6).map(move |o| (p, o)))
        .collect();
    assert_eq!(positions(&got), expected);
    // Partition by partition, offsets ascending: the same range always prints the same.
    let order: Vec<(i32, i64)> = got
        .iter()
        .map(|l| {
            (
                l["partition"].as_i64().unwrap_or(0) as i32,
                l["offset"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(order, sorted);

    // A time exactly at a record includes it in --from and excludes it in --to; a range between
    // two records is empty.
    let out = scanstream(
        &f.scope,
        &[
            "replay",
            "--topic",
            "scans.events",
            "--from",
            &rfc3339(T0 + 9000),
        ],
    );
    assert_eq!(positions(&lines(&stdout(&out))).len(), PARTITIONS as usize);
    let out = scanstream(
        &f.scope,
        &[
            "replay",
            "--topic",
            "scans.events",
            "--from",
            &rfc3339(T0 + 1500),
            "--to",
            &rfc3339(T0 + 1999),
        ],
    );
    assert!(out.status.success());
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));

    // Every line: fixed field order, and the value decodes back to the event produced.
    for line in &got {
        let text = serde_json::to_string(line).unwrap_or_default();
        let keys: Vec<&str> = line
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(
            BTreeSet::from_iter(keys),
            BTreeSet::from([
                "topic",
                "partition",
                "offset",
                "timestamp",
                "key",
                "headers",
                "value"
            ]),
            "{text}"
        );
        let p = line["partition"].as_i64().unwrap_or(0) as i32;
        let o = line["offset"].as_i64().unwrap_or(0);
        let back: ScanEvent =
            serde_json::from_value(line["value"].clone()).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(&back, &produced[&(p, o)]);
        assert_eq!(line["timestamp"], T0 + o * 1000);
        assert_eq!(line["key"], produced[&(p, o)].job_id.key());
        assert_eq!(line["headers"][0]["key"], "correlation-id");
        assert_eq!(line["topic"], f.names().name(Topic::Events));
    }
    let raw = stdout(&scanstream(
        &f.scope,
        &["replay", "--topic", "scans.events", "--to", "0:1"],
    ));
    assert!(
        raw.starts_with("{\"topic\":")
            && raw.contains("\"partition\":0,\"offset\":0,\"timestamp\":"),
        "{raw}"
    );

    // Offsets: 8 onwards everywhere, and per-partition ends.
    let out = scanstream(
        &f.scope,
        &["replay", "--topic", "scans.events", "--from", "8"],
    );
    assert_eq!(
        positions(&lines(&stdout(&out))).len(),
        2 * PARTITIONS as usize
    );
    let out = scanstream(
        &f.scope,
        &[
            "replay",
            "--topic",
            "scans.events",
            "--from",
            "0:2,1:9",
            "--to",
            "0:4,1:10,2:0",
        ],
    );
    assert_eq!(
        positions(&lines(&stdout(&out))),
        BTreeSet::from([(0, 2), (0, 3), (1, 9)])
    );

    // Filters: one job, one event type.
    let out = scanstream(
        &f.scope,
        &["replay", "--topic", "scans.events", "--job", "job-1-2"],
    );
    assert_eq!(
        positions(&lines(&stdout(&out))),
        BTreeSet::from([(1, 6), (1, 7), (1, 8)])
    );
    let out = scanstream(
        &f.scope,
        &[
            "replay",
            "--topic",
            "scans.events",
            "--event-type",
            "ScanSucceeded",
            "--from",
            "0:0,1:10,2:10",
        ],
    );
    assert_eq!(
        positions(&lines(&stdout(&out))),
        BTreeSet::from([(0, 2), (0, 5), (0, 8)])
    );
    let out = scanstream(
        &f.scope,
        &[
            "replay",
            "--topic",
            "scans.events",
            "--repo",
            "https://git.example.com/job-2-0.git",
        ],
    );
    assert_eq!(positions(&lines(&stdout(&out))), BTreeSet::from([(2, 0)]));

    // Bad input: a clear message, exit 2.
    let out = scanstream(&f.scope, &["replay", "--topic", "scans.nothing"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot tell which records"));
    let out = scanstream(
        &f.scope,
        &["replay", "--topic", "scans.events", "--from", "yesterday"],
    );
    assert_eq!(out.status.code(), Some(2));
}
