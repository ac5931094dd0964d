//! Spawning an ingest app for a test, and talking to it.

use std::time::{Duration, Instant};

use rdkafka::Message;
use scanstream_contracts::Topic;
use scanstream_contracts::schedule::Schedule;
use scanstream_ingest::Ingest;
use scanstream_platform::server::Application;
use scanstream_testcontainers::{TestScope, TopicReader, ensure_topics};
use tokio_util::sync::CancellationToken;

/// Partitions of the data topics (`scans.schedules` always has one).
pub const PARTITIONS: i32 = 2;

/// A running ingest app, served alone on a free port, and what a test reads back.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    /// The app's corner of the cluster: its topics and registry subjects.
    pub scope: TestScope,
    /// Reads the app's topics.
    pub reader: TopicReader,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// An app on the shared cluster, auth off unless `toml` configures it, ready to accept.
pub async fn spawn_app(test: &str, toml: &str) -> TestApp {
    spawn_on(TestScope::new(test), toml, true).await
}

/// An app on `scope`, which may point at another cluster than the shared one. With
/// `wait_ready`, the topics are created first and the app answers `/readyz` with 200 before
/// this returns.
pub async fn spawn_on(scope: TestScope, toml: &str, wait_ready: bool) -> TestApp {
    // Auth is off (loopback) unless the test configures it.
    let toml = if toml.contains("[api]") {
        toml.to_owned()
    } else {
        format!("[api]\nauth_enabled = false\n{toml}")
    };
    let settings = scope.settings(&toml, &[("topics.partitions", &PARTITIONS.to_string())]);
    if wait_ready {
        ensure_topics(&settings).await;
    }
    let metrics = scanstream_platform::telemetry::metrics_handle().unwrap();
    let ingest = Ingest::start(&settings).await.unwrap();
    let app = Application::build(&settings.api.listen, vec![ingest], metrics).unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move {
            let _ = app.run_until_stopped(stop).await;
        }
    });
    let http = reqwest::Client::new();
    if wait_ready {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = http
                .get(format!("{base}/readyz"))
                .send()
                .await
                .map(|r| r.status().as_u16());
            if matches!(ready, Ok(200)) {
                break;
            }
            assert!(Instant::now() < deadline, "ingest never became ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    TestApp {
        base,
        http,
        reader: scope.reader(),
        scope,
        stop,
        task,
    }
}

impl TestApp {
    /// `POST /jobs` with a JSON body.
    pub async fn post(&self, body: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/jobs", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    /// A request to `path`, with a JSON body when given.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        request.send().await.unwrap()
    }

    /// [`TestApp::send`], answering the status and the body as JSON (`Null` if it is not).
    pub async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let response = self.send(method, path, body).await;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// The high watermark of `topic` once it stopped moving: a transaction's commit markers
    /// land just after its commit returned, so a watermark read right after a write may still
    /// grow by them.
    pub async fn settled_watermark(&self, topic: Topic) -> i64 {
        let mut last = self.reader.watermark(topic);
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = self.reader.watermark(topic);
            if now == last {
                return now;
            }
            last = now;
        }
    }

    /// The decoded records of scans.schedules, `None` for tombstones.
    pub async fn schedule_records(&self) -> Vec<(String, Option<Schedule>)> {
        let codec = self.scope.codec();
        let mut out = Vec::new();
        for m in self.reader.read_all(Topic::Schedules) {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let value = match m.payload() {
                Some(bytes) => Some(codec.decode::<Schedule>(bytes).await.unwrap()),
                None => None,
            };
            out.push((key, value));
        }
        out
    }

    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}
