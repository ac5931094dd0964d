//! `scanstream replay` into other forms: an Avro container file that fastavro reads, and a copy
//! into another topic whose canonical lines equal the source's.

use std::process::Command;

use serde_json::Value;

use crate::helpers::{
    Fixture, PARTITIONS, T0, lines, python, rfc3339, scanstream, stdout, ten_per_partition,
};

#[tokio::test]
async fn an_avro_container_file_opens_with_fastavro_and_holds_the_same_records() {
    let f = Fixture::new("replay-avro").await;
    ten_per_partition(&f).await;
    let dir = tempfile::tempdir().unwrap();
    let avro = dir.path().join("events.avro");
    let range = ["--from", &rfc3339(T0 + 2000), "--to", &rfc3339(T0 + 8000)];
    let out = scanstream(
        &f.scope,
        &[
            &[
                "replay",
                "--topic",
                "scans.events",
                "--format",
                "avro",
                "--out",
            ],
            &[avro.to_str().unwrap_or_default()][..],
            &range[..],
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jsonl = lines(&stdout(&scanstream(
        &f.scope,
        &[&["replay", "--topic", "scans.events"][..], &range[..]].concat(),
    )));
    let script = r#"
import json, sys
from fastavro import reader
with open(sys.argv[1], "rb") as f:
    r = reader(f)
    assert r.writer_schema["name"] == "io.scanstream.replay.Record", r.writer_schema["name"]
    for rec in r:
        v = rec["value"]
        print(json.dumps([rec["partition"], rec["offset"], rec["timestamp"] if isinstance(rec["timestamp"], int) else int(rec["timestamp"].timestamp() * 1000), rec["key"], str(v["event_id"]), v["job_name"], v["attempt"], v["sequence"]]))
"#;
    let run = Command::new(python())
        .args(["-c", script])
        .arg(&avro)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python()));
    assert!(
        run.status.success(),
        "fastavro could not read the file (scripts/test installs fastavro into a venv and sets SCANSTREAM_PYTHON): {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let from_avro: Vec<Value> = lines(&String::from_utf8_lossy(&run.stdout));
    let from_json: Vec<Value> = jsonl
        .iter()
        .map(|l| {
            serde_json::json!([
                l["partition"],
                l["offset"],
                l["timestamp"],
                l["key"],
                l["value"]["event_id"],
                l["value"]["job_name"],
                l["value"]["attempt"],
                l["value"]["sequence"]
            ])
        })
        .collect();
    assert_eq!(from_avro.len(), 6 * PARTITIONS as usize);
    assert_eq!(from_avro, from_json);
}

#[tokio::test]
async fn into_copies_a_range_and_both_replays_print_the_same_canonical_lines() {
    let f = Fixture::new("replay-into").await;
    ten_per_partition(&f).await;
    let target = format!("{}copy.scans.events", f.settings.topics.prefix);
    let range = ["--from", &rfc3339(T0 + 1000), "--to", &rfc3339(T0 + 9000)];
    let out = scanstream(
        &f.scope,
        &[
            &[
                "replay",
                "--topic",
                "scans.events",
                "--into",
                &target,
                "--rate",
                "100",
            ][..],
            &range[..],
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 24 records at 100/s: the rate limit makes it take about a quarter of a second at least.
    let source = stdout(&scanstream(
        &f.scope,
        &[
            &["replay", "--topic", "scans.events", "--canonical"][..],
            &range[..],
        ]
        .concat(),
    ));
    let copy = stdout(&scanstream(
        &f.scope,
        &["replay", "--topic", &target, "--canonical"],
    ));
    assert_eq!(source.lines().count(), 8 * PARTITIONS as usize);
    assert_eq!(copy, source);
    // Not canonical: the copy's own topic and offsets.
    let copy_lines = lines(&stdout(&scanstream(
        &f.scope,
        &["replay", "--topic", &target],
    )));
    assert!(copy_lines.iter().all(|l| l["topic"] == target.as_str()));
    assert_eq!(copy_lines[0]["offset"], 0);
}
