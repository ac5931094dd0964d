//! Schedules fire exactly once across failover, on the real broker and registry.
//!
//! Two `scanstream scheduler` processes run beside an ingest; the schedule clock runs 60 times
//! faster than real time (`scheduler.clock_scale`, the same setting in every process), so a
//! minute tick passes every second. The leader is killed with SIGKILL and stays dead for several
//! ticks until the standby's group session notices. Afterwards `scans.events` must hold every
//! due tick of a schedule exactly once; a deleted schedule never fires again, and a suspended
//! one fires nothing until it is resumed and then fires at the next tick.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use scanstream_contracts::Topic;
use scanstream_contracts::event::{EventPayload, ScanEvent};
use scanstream_ingest::Ingest;
use scanstream_platform::Settings;
use scanstream_platform::kafka::{ClientRole, KafkaFactory};
use scanstream_platform::server::Application;
use scanstream_platform::tail::{Tail, TailSource};
use scanstream_scheduler::{minute_of, tick_of};
use scanstream_testcontainers::TestScope;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const SCALE: i64 = 60;

fn real_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The test's schedule clock, the formula of `scheduler.clock_scale`.
struct SimClock {
    origin: i64,
}

impl SimClock {
    fn now(&self) -> i64 {
        self.origin + (real_ms() - self.origin) * SCALE
    }
}

/// A `scanstream scheduler` process and the port it serves probes on.
struct Instance {
    name: &'static str,
    child: Child,
    port: u16,
}

impl Instance {
    fn start(name: &'static str, vars: &[(String, String)], log_dir: &Path) -> Instance {
        let log = std::fs::File::create(log_dir.join(format!("{name}.log"))).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_scanstream"))
            .args(["scheduler", "--instance-id", name])
            .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(
                "SCANSTREAM__TELEMETRY__LOG_FILTER",
                "info,scanstream_scheduler=debug",
            )
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("cannot start scanstream scheduler");
        let stdout = child.stdout.take().expect("no stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line
                    .trim()
                    .strip_prefix("scanstream scheduler listening on port ")
                {
                    let _ = sender.send(port.trim().parse::<u16>().unwrap_or(0));
                }
            }
        });
        let port = receiver
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("scheduler {name} never listened"));
        Instance { name, child, port }
    }

    async fn readiness(&self, http: &reqwest::Client) -> Value {
        match http
            .get(format!("http://127.0.0.1:{}/readyz", self.port))
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    async fn leads(&self, http: &reqwest::Client) -> bool {
        self.readiness(http).await["scheduler"]["leader"] == json!(true)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until exactly one of `instances` leads and returns its index.
async fn leader_of(instances: &[&Instance], http: &reqwest::Client, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let mut leading = Vec::new();
        for (i, instance) in instances.iter().enumerate() {
            if instance.leads(http).await {
                leading.push(i);
            }
        }
        if let [one] = leading[..] {
            return one;
        }
        assert!(
            Instant::now() < deadline,
            "no single leader among {:?} within {within:?} (leading: {leading:?})",
            instances.iter().map(|i| i.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// The ticks of each schedule's `JobSubmitted` events on `scans.events`, with how many times
/// each appears and how late (schedule-clock ms after the tick) it was submitted.
type Fired = BTreeMap<String, BTreeMap<i64, Vec<i64>>>;

async fn fired(settings: &Settings) -> Fired {
    let codec = Arc::new(scanstream_platform::registry::codec(settings).unwrap());
    let stop = CancellationToken::new();
    let (tail, task) = Tail::start(
        TailSource {
            factory: KafkaFactory::new(settings.kafka.clone()),
            role: ClientRole::Cli,
            codec,
            topic: Topic::Events,
            stop: stop.clone(),
        },
        Fired::new(),
        |fired: &mut Fired, _key: &str, event: Option<ScanEvent>| {
            let Some(event) = event else { return };
            if let EventPayload::JobSubmitted(submitted) = &event.payload
                && let Some(schedule) = &submitted.schedule
                && let Some(tick) = tick_of(schedule, &event.job_name)
            {
                fired
                    .entry(schedule.clone())
                    .or_default()
                    .entry(tick)
                    .or_default()
                    .push(event.occurred_at - tick * 60_000);
            }
        },
    );
    tail.sync(Duration::from_secs(30)).await.unwrap();
    let result = tail.read(Clone::clone);
    stop.cancel();
    let _ = task.await;
    result
}

#[tokio::test]
async fn every_due_tick_fires_exactly_once_across_a_killed_leader() {
    let scope = TestScope::new("scheduler-failover");
    let origin = real_ms();
    let clock = SimClock { origin };
    // The settings of every process of the test (the schedulers get them as environment
    // variables): on top of the scope's, the schedule clock and a short group session.
    let (scale, origin_ms) = (format!("{SCALE}.0"), origin.to_string());
    let overrides = [
        ("topics.partitions", "2"),
        ("api.auth_enabled", "false"),
        ("scheduler.clock_scale", scale.as_str()),
        ("scheduler.clock_origin_ms", origin_ms.as_str()),
        ("scheduler.session_timeout_ms", "6000"),
        // The failover gap is some 6–10 s, i.e. 6–10 schedule minutes: every tick fires late.
        ("scheduler.starting_deadline_seconds", "3600"),
    ];
    let vars = scope.env(&overrides);
    let settings = scope.settings("", &overrides);
    scanstream::topics::ensure(&settings, false).await.unwrap();
    let logs = tempfile::tempdir().unwrap();

    let metrics = scanstream_platform::telemetry::metrics_handle().unwrap();
    let ingest = Ingest::start(&settings).await.unwrap();
    let ingest = Application::build(&settings.api.listen, vec![ingest], metrics).unwrap();
    let api = Api {
        http: reqwest::Client::new(),
        base: format!("http://127.0.0.1:{}", ingest.port()),
    };
    let stop_ingest = CancellationToken::new();
    let ingest_task = tokio::spawn(ingest.run_until_stopped(stop_ingest.clone()));

    let mut a = Instance::start("sched-a", &vars, logs.path());
    let mut b = Instance::start("sched-b", &vars, logs.path());
    let first = leader_of(&[&a, &b], &api.http, Duration::from_secs(60)).await;

    let repo = "https://github.com/example/scheduled.git";
    let mut created_at = BTreeMap::new();
    for name in ["every", "gone", "paused"] {
        let deadline = Instant::now() + Duration::from_secs(30);
        let (status, body) = loop {
            let answer = api
                .call(
                    reqwest::Method::POST,
                    "/jobs/schedule",
                    Some(json!({"name": name, "repo": repo})),
                )
                .await;
            if answer.0 != 503 || Instant::now() > deadline {
                break answer;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["schedule"], "*/1 * * * *");
        created_at.insert(name, clock.now());
    }

    // A few ticks with the first leader, then it dies without leaving the group.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (killed, survivor) = if first == 0 {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    killed.child.kill().expect("cannot kill the leader");
    let _ = killed.child.wait();
    let killed_at = clock.now();
    leader_of(&[survivor], &api.http, Duration::from_secs(60)).await;
    let took_over_at = clock.now();
    let gap_ticks = minute_of(took_over_at) - minute_of(killed_at);
    assert!(
        gap_ticks >= 3,
        "the leader should be gone for several ticks, was {gap_ticks}"
    );

    // Delete one schedule; suspend another for a few ticks, then resume it.
    let (status, _) = api
        .call(reqwest::Method::DELETE, "/jobs/schedule/gone", None)
        .await;
    assert_eq!(status, 200);
    let deleted_at = clock.now();
    let (status, body) = api
        .call(
            reqwest::Method::PATCH,
            "/jobs/schedule/paused",
            Some(json!({"suspend": true})),
        )
        .await;
    assert_eq!((status, &body["suspend"]), (200, &json!(true)));
    let suspended_at = clock.now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let resume_sent_at = clock.now();
    let (status, body) = api
        .call(
            reqwest::Method::PATCH,
            "/jobs/schedule/paused",
            Some(json!({"suspend": false})),
        )
        .await;
    assert_eq!((status, &body["suspend"]), (200, &json!(false)));
    let resumed_at = clock.now();
    tokio::time::sleep(Duration::from_secs(4)).await;

    // Stop the survivor cleanly; it leaves the group and exits 0.
    let last_survivor_minute = minute_of(clock.now());
    let survivor_pid = survivor.child.id();
    let status = Command::new("kill")
        .args(["-TERM", &survivor_pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let survivor = if first == 0 { &mut b } else { &mut a };
    let exit = survivor.child.wait().unwrap();
    assert!(exit.success(), "the scheduler exited with {exit}");
    let stopped_minute = minute_of(clock.now());

    let fired = fired(&settings).await;
    let logs_text = || {
        ["sched-a", "sched-b"]
            .iter()
            .map(|n| {
                let text = std::fs::read_to_string(logs.path().join(format!("{n}.log")))
                    .unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                format!(
                    "--- {n}\n{}",
                    lines[lines.len().saturating_sub(40)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };

    // "every": each tick from its creation until the survivor stopped, exactly once.
    let every = fired
        .get("every")
        .unwrap_or_else(|| panic!("nothing fired\n{}", logs_text()));
    let duplicates: Vec<(&i64, usize)> = every
        .iter()
        .filter(|(_, lates)| lates.len() != 1)
        .map(|(tick, lates)| (tick, lates.len()))
        .collect();
    assert!(
        duplicates.is_empty(),
        "ticks fired more than once: {duplicates:?}"
    );
    let on_time: Vec<i64> = every.values().map(|l| l[0] / SCALE).collect();
    eprintln!("real ms between each tick and its submission: {on_time:?}");

    let first_due = minute_of(created_at["every"]) + 1;
    let ticks: BTreeSet<i64> = every.keys().copied().collect();
    // The survivor fires a tick just after its instant: the minute of the stop may not be in.
    let expected: BTreeSet<i64> = (first_due..last_survivor_minute).collect();
    let missing: Vec<&i64> = expected.difference(&ticks).collect();
    assert!(
        missing.is_empty(),
        "due ticks never fired: {missing:?} (fired {ticks:?}, expected {first_due}..{last_survivor_minute})\n{}",
        logs_text()
    );
    assert!(
        ticks.iter().all(|t| *t <= stopped_minute),
        "a tick after the stop fired: {ticks:?}"
    );
    // The ticks that fell due while no leader ran fired late, once, after the takeover.
    let late: Vec<i64> = (minute_of(killed_at) + 1..=minute_of(took_over_at))
        .filter(|t| every.get(t).is_some_and(|lates| lates[0] > 60_000))
        .collect();
    assert!(
        late.len() >= 2,
        "ticks of the leaderless gap should fire late after the takeover: {every:?}"
    );

    // "gone": fired before its deletion, never after.
    let gone = &fired["gone"];
    assert!(!gone.is_empty());
    let after_delete: Vec<&i64> = gone
        .keys()
        .filter(|t| **t > minute_of(deleted_at))
        .collect();
    assert!(
        after_delete.is_empty(),
        "a deleted schedule fired: {after_delete:?}"
    );

    // "paused": nothing between the suspension and the resume, then the next tick.
    let paused = &fired["paused"];
    let while_suspended: Vec<&i64> = paused
        .keys()
        .filter(|t| **t > minute_of(suspended_at) && **t < minute_of(resume_sent_at))
        .collect();
    assert!(
        while_suspended.is_empty(),
        "a suspended schedule fired: {while_suspended:?}"
    );
    let next_after_resume = minute_of(resumed_at) + 1;
    assert!(
        paused.contains_key(&next_after_resume),
        "the resumed schedule did not fire at its next tick {next_after_resume}: {:?}",
        paused.keys().collect::<Vec<_>>()
    );
    assert!(paused.values().all(|lates| lates.len() == 1));

    stop_ingest.cancel();
    let _ = ingest_task.await;
}

/// A schedule as the API stores it, firing every minute from `created_at` (schedule clock).
fn every_minute(name: &str, created_at: i64) -> scanstream_contracts::schedule::Schedule {
    scanstream_contracts::schedule::Schedule {
        name: name.into(),
        cron: "*/1 * * * *".into(),
        time_zone: None,
        repo_url: "https://github.com/example/scheduled.git".into(),
        git_ref: None,
        engines: vec!["secrets".into()],
        mode: Default::default(),
        concurrency_policy: Default::default(),
        suspend: false,
        successful_jobs_history_limit: 3,
        failed_jobs_history_limit: 1,
        starting_deadline_seconds: None,
        created_at,
        updated_at: created_at,
    }
}

/// Records on `scans.schedules` that no API would write (bytes that do not decode, a deadline
/// that overflowed the old planner, an expression that does not parse) never stop the other
/// schedules: they fire every minute, the bad one is named in readiness and a metric, and the
/// leader stays ready.
#[tokio::test]
async fn poison_schedules_never_stop_the_others() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let scope = TestScope::new("scheduler-poison");
    let origin = real_ms();
    let clock = SimClock { origin };
    let (scale, origin_ms) = (format!("{SCALE}.0"), origin.to_string());
    let overrides = [
        ("topics.partitions", "2"),
        ("scheduler.clock_scale", scale.as_str()),
        ("scheduler.clock_origin_ms", origin_ms.as_str()),
        ("scheduler.session_timeout_ms", "6000"),
    ];
    let vars = scope.env(&overrides);
    let settings = scope.settings("", &overrides);
    scanstream::topics::ensure(&settings, false).await.unwrap();
    let codec = scope.codec();
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka.bootstrap_servers)
        .create()
        .unwrap();
    let topic = scope.names().name(Topic::Schedules);
    let created = clock.now();
    let mut overflow = every_minute("overflow", created);
    overflow.starting_deadline_seconds = Some(i64::MAX);
    let mut broken = every_minute("broken", created);
    broken.cron = "not a cron".into();
    let mut records: Vec<(String, Vec<u8>)> = vec![("garbage".into(), b"not avro".to_vec())];
    for schedule in [overflow, broken, every_minute("steady", created)] {
        let bytes = codec.encode(Topic::Schedules, &schedule).await.unwrap();
        records.push((schedule.name.clone(), bytes));
    }
    for (key, payload) in &records {
        producer
            .send(
                FutureRecord::to(&topic).key(key).payload(payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    let logs = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let scheduler = Instance::start("sched-poison", &vars, logs.path());
    leader_of(&[&scheduler], &http, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let readiness = scheduler.readiness(&http).await;
    let metrics = http
        .get(format!("http://127.0.0.1:{}/metrics", scheduler.port))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let now_minute = minute_of(clock.now());
    drop(scheduler);

    assert_eq!(readiness["ready"], json!(true), "{readiness}");
    assert_eq!(
        readiness["scheduler"]["invalid_schedules"],
        json!(["broken"]),
        "{readiness}"
    );
    assert!(
        metrics.contains("scanstream_scheduler_invalid_schedules 1"),
        "{metrics}"
    );
    let fired = fired(&settings).await;
    let first_due = minute_of(created) + 1;
    for name in ["steady", "overflow"] {
        let ticks: BTreeSet<i64> = fired
            .get(name)
            .map(|t| t.keys().copied().collect())
            .unwrap_or_default();
        let expected: BTreeSet<i64> = (first_due..now_minute - 1).collect();
        assert!(
            expected.is_subset(&ticks),
            "{name} fired {ticks:?}, expected every tick of {first_due}..{}",
            now_minute - 1
        );
        assert!(fired[name].values().all(|lates| lates.len() == 1));
    }
    assert!(!fired.contains_key("broken"));
}
