//! The kind end-to-end harness: deploys the Strimzi operator, the Kafka cluster, the registry
//! and every scanstream role of `k8s/overlays/kind` into a kind cluster with server-side apply,
//! waits on their conditions, submits a scan through the Ingress and waits for its stats.
//!
//! `tools/kind-e2e` creates the cluster, builds and loads the image, and runs this test. Without
//! a reachable cluster under the kube context `kind-scanstream` (`SCANSTREAM_KIND_CONTEXT`) the
//! test says so and passes: only a kind context is ever used, never the current one, so it
//! cannot deploy into a real cluster by accident. Its apply and wait helpers also run against a
//! real API server with fake nodes (`tools/kube-up`) in every `scripts/test` run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::{Discovery, Scope};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Config, ResourceExt};
use scanstream_testcontainers::kube::ControlPlane;
use sha2::{Digest, Sha256};

const NAMESPACE: &str = "scanstream";
const MANAGER: &str = "scanstream-kind-e2e";
/// The namespace Strimzi's install files name; the operator goes into scanstream's.
const STRIMZI_PLACEHOLDER_NAMESPACE: &str = "myproject";
const DEMO_REPO: &str = "https://github.com/octocat/Hello-World.git";

#[tokio::test]
async fn kind_deploys_strimzi_and_scanstream_and_a_scan_goes_through() {
    let Some(client) = cluster().await else {
        return;
    };
    let strimzi = std::env::var("SCANSTREAM_STRIMZI_INSTALL").unwrap_or_else(|_| {
        panic!("a kind cluster answers but SCANSTREAM_STRIMZI_INSTALL is not set: run tools/kind-e2e, which downloads the pinned Strimzi release")
    });
    let operator = std::fs::read_to_string(&strimzi).unwrap_or_else(|e| panic!("{strimzi}: {e}"));
    let overlay = kustomize(&repo_root().join("k8s/overlays/kind"));

    // The namespace first, then the operator and its CRDs, then everything that uses them.
    let overlay_docs = documents(&overlay, NAMESPACE);
    let (namespaces, rest): (Vec<_>, Vec<_>) = overlay_docs
        .into_iter()
        .partition(|d| d.types.as_ref().is_some_and(|t| t.kind == "Namespace"));
    apply(&client, &namespaces).await;
    let operator_docs = documents(&operator, NAMESPACE);
    apply(&client, &operator_docs).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for doc in operator_docs
        .iter()
        .filter(|d| kind_of(d) == "CustomResourceDefinition")
    {
        wait(
            "CRD established",
            Duration::from_secs(60),
            await_condition(
                crds.clone(),
                &doc.name_any(),
                conditions::is_crd_established(),
            ),
        )
        .await;
    }
    let token = secrets(&client).await;
    apply(&client, &rest).await;

    let kafka = dynamic_api(&client, "kafka.strimzi.io", "v1", "Kafka").await;
    wait(
        "Kafka ready",
        Duration::from_secs(900),
        await_condition(kafka, "scanstream", |o: Option<&DynamicObject>| {
            o.is_some_and(|o| condition_true(&o.data, "Ready"))
        }),
    )
    .await;
    await_roles(&client, Duration::from_secs(600)).await;

    // Through the Ingress (tools/kind-e2e maps the node's port 80 to the host).
    let base = std::env::var("SCANSTREAM_KIND_URL").unwrap_or_else(|_| "http://127.0.0.1".into());
    let http = reqwest::Client::new();
    let name = format!(
        "kind-e2e-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let answer = http
            .post(format!("{base}/jobs"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"name": name, "repo": DEMO_REPO}))
            .send()
            .await;
        match answer {
            Ok(r) if r.status().is_success() => break,
            Ok(r) if r.status().is_client_error() && r.status().as_u16() != 404 => {
                panic!(
                    "POST /jobs refused: {} {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                )
            }
            other if Instant::now() > deadline => panic!("POST /jobs never accepted: {other:?}"),
            _ => tokio::time::sleep(Duration::from_secs(3)).await,
        }
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let stats: serde_json::Value = match http
            .get(format!("{base}/jobs/stats"))
            .bearer_auth(&token)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => r.json().await.unwrap_or_default(),
            _ => serde_json::Value::Null,
        };
        let job = &stats[&name];
        if job["succeeded"].as_u64().unwrap_or(0) >= 1 {
            eprintln!("kind e2e: {name} succeeded: {job}");
            return;
        }
        assert!(
            job["failed"].as_u64().unwrap_or(0) == 0,
            "the scan failed: {job}"
        );
        assert!(
            Instant::now() < deadline,
            "no stats for {name} after 5 minutes: {stats}"
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// The harness's own steps against a real API server (`tools/kube-up`: etcd, kube-apiserver,
/// the controllers, the scheduler and three kwok fake nodes) where no container engine runs:
/// the whole kind overlay, Strimzi's resources too (their CRDs generated by Strimzi's own
/// generator; no operator reconciles them), the Secrets an installation provides, a volume per
/// claim; every role becomes available on the fake nodes and the schemas Job completes. What
/// kind adds (the operator, Kafka, a real scan) needs containers.
#[tokio::test]
async fn the_harness_deploys_the_kind_overlay_onto_a_real_api_server() {
    if std::env::var_os("SCANSTREAM_KUSTOMIZE").is_none() {
        eprintln!("skipped: SCANSTREAM_KUSTOMIZE is not set (scripts/test sets it)");
        return;
    }
    let plane = ControlPlane::start().expect("tools/kube-up");
    let kubeconfig = Kubeconfig::read_from(plane.kubeconfig()).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = Client::try_from(config).unwrap();
    let docs = documents(
        &kustomize(&repo_root().join("k8s/overlays/kind")),
        NAMESPACE,
    );
    let (namespaces, rest): (Vec<_>, Vec<_>) =
        docs.into_iter().partition(|d| kind_of(d) == "Namespace");
    apply(&client, &namespaces).await;
    secrets(&client).await;
    apply(&client, &rest).await;
    bind_claims(&client).await;
    await_roles(&client, Duration::from_secs(120)).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), NAMESPACE);
    wait(
        "schemas Job complete",
        Duration::from_secs(120),
        await_condition(jobs, "scanstream-schemas", conditions::is_job_completed()),
    )
    .await;
}

/// A pre-bound volume for each claim that has none, as a static provisioner would make
/// (the control plane has no storage driver); waits for the aggregator's claim, which its
/// StatefulSet controller makes.
async fn bind_claims(client: &Client) {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NAMESPACE);
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let started = Instant::now();
    let listed = loop {
        let listed = claims.list(&Default::default()).await.unwrap().items;
        if listed.iter().any(|c| c.name_any().starts_with("store-")) {
            break listed;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the aggregator's claim was never made"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for claim in listed.iter().filter(|c| c.name_any().starts_with("store-")) {
        let spec = claim.spec.clone().unwrap_or_default();
        let volume: PersistentVolume = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("pv-{}", claim.name_any())},
            "spec": {
                "capacity": {"storage": spec.resources.and_then(|r| r.requests).and_then(|r| r.get("storage").cloned())},
                "accessModes": spec.access_modes,
                "storageClassName": spec.storage_class_name.unwrap_or_default(),
                "hostPath": {"path": format!("/var/lib/fake/{}", claim.name_any())},
                "claimRef": {"namespace": NAMESPACE, "name": claim.name_any()},
            },
        }))
        .unwrap();
        volumes
            .patch(
                &volume.name_any(),
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&volume),
            )
            .await
            .unwrap();
    }
}

/// The kind cluster's client, or `None` (with the reason printed) when none answers.
async fn cluster() -> Option<Client> {
    let context =
        std::env::var("SCANSTREAM_KIND_CONTEXT").unwrap_or_else(|_| "kind-scanstream".into());
    let skip = |why: String| {
        eprintln!(
            "skipped: no kind cluster reachable under the kube context {context:?} ({why}); tools/kind-e2e creates one and runs this test"
        );
    };
    let options = KubeConfigOptions {
        context: Some(context.clone()),
        ..KubeConfigOptions::default()
    };
    let config = match Config::from_kubeconfig(&options).await {
        Ok(config) => config,
        Err(e) => {
            skip(e.to_string());
            return None;
        }
    };
    let client = match Client::try_from(config) {
        Ok(client) => client,
        Err(e) => {
            skip(e.to_string());
            return None;
        }
    };
    match tokio::time::timeout(Duration::from_secs(10), client.apiserver_version()).await {
        Ok(Ok(version)) => {
            eprintln!("kind e2e: Kubernetes {}.{}", version.major, version.minor);
            Some(client)
        }
        Ok(Err(e)) => {
            skip(e.to_string());
            None
        }
        Err(_) => {
            skip("the API server did not answer within 10 s".into());
            None
        }
    }
}

/// `kustomize build` of an overlay, with the binary tools/kind-e2e passes (or `kubectl`).
fn kustomize(dir: &Path) -> String {
    let output = match std::env::var_os("SCANSTREAM_KUSTOMIZE") {
        Some(bin) => std::process::Command::new(bin)
            .arg("build")
            .arg(dir)
            .output(),
        None => std::process::Command::new("kubectl")
            .arg("kustomize")
            .arg(dir)
            .output(),
    }
    .expect("kustomize");
    assert!(
        output.status.success(),
        "kustomize build {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The documents of a multi-document YAML stream, with Strimzi's placeholder namespace replaced
/// by `namespace` (in metadata and in role binding subjects).
fn documents(text: &str, namespace: &str) -> Vec<DynamicObject> {
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let value: serde_json::Value = match serde::Deserialize::deserialize(doc) {
            Ok(serde_json::Value::Null) => continue,
            Ok(value) => value,
            Err(e) => panic!("unreadable YAML document: {e}"),
        };
        let mut value = value;
        replace_namespace(&mut value, namespace);
        out.push(serde_json::from_value(value).expect("not a resource"));
    }
    out
}

fn replace_namespace(value: &mut serde_json::Value, namespace: &str) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "namespace" && child == STRIMZI_PLACEHOLDER_NAMESPACE {
                    *child = serde_json::Value::String(namespace.to_owned());
                } else {
                    replace_namespace(child, namespace);
                }
            }
        }
        serde_json::Value::Array(items) => {
            items
                .iter_mut()
                .for_each(|v| replace_namespace(v, namespace));
        }
        _ => {}
    }
}

fn kind_of(doc: &DynamicObject) -> &str {
    doc.types.as_ref().map_or("", |t| t.kind.as_str())
}

/// True when `status.conditions` holds `type` with status `"True"`.
fn condition_true(data: &serde_json::Value, kind: &str) -> bool {
    data["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == kind && c["status"] == "True"))
}

/// Server-side applies every document (discovery resolves each kind and its scope).
async fn apply(client: &Client, docs: &[DynamicObject]) {
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("API discovery");
    let params = PatchParams::apply(MANAGER).force();
    for doc in docs {
        let types = doc.types.as_ref().expect("a document without kind");
        let gvk = GroupVersionKind::try_from(types).unwrap();
        let (resource, caps) = discovery
            .resolve_gvk(&gvk)
            .unwrap_or_else(|| panic!("the cluster does not serve {gvk:?}"));
        let api: Api<DynamicObject> = if caps.scope == Scope::Namespaced {
            let ns = doc.namespace().unwrap_or_else(|| NAMESPACE.to_owned());
            Api::namespaced_with(client.clone(), &ns, &resource)
        } else {
            Api::all_with(client.clone(), &resource)
        };
        api.patch(&doc.name_any(), &params, &Patch::Apply(doc))
            .await
            .unwrap_or_else(|e| panic!("applying {} {}: {e}", types.kind, doc.name_any()));
    }
}

async fn dynamic_api(
    client: &Client,
    group: &str,
    version: &str,
    kind: &str,
) -> Api<DynamicObject> {
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("API discovery");
    let (resource, _) = discovery
        .resolve_gvk(&GroupVersionKind::gvk(group, version, kind))
        .unwrap_or_else(|| panic!("the cluster does not serve {group}/{version} {kind}"));
    Api::namespaced_with(client.clone(), NAMESPACE, &resource)
}

/// Creates the Secrets an installation provides itself: an API token (returned; only its hash is
/// stored) and the findings' fingerprint key.
async fn secrets(client: &Client) -> String {
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    let tokens = format!(
        "[[api.tokens]]\nname = \"kind-e2e\"\nsha256 = \"{hash}\"\nscopes = [\"scans:write\", \"scans:read\"]\n"
    );
    let key = format!("{}", uuid::Uuid::new_v4().simple());
    let docs = [
        secret(
            "scanstream-api-tokens",
            BTreeMap::from([("tokens.toml", tokens)]),
        ),
        secret("scanstream-fingerprint-key", BTreeMap::from([("key", key)])),
    ];
    apply(client, &docs).await;
    token
}

fn secret(name: &str, data: BTreeMap<&str, String>) -> DynamicObject {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "stringData": data,
    }))
    .unwrap()
}

async fn wait<F, T, E>(what: &str, limit: Duration, future: F)
where
    F: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Debug,
{
    let started = Instant::now();
    match tokio::time::timeout(limit, future).await {
        Ok(Ok(_)) => eprintln!("kind e2e: {what} after {:.0?}", started.elapsed()),
        Ok(Err(e)) => panic!("waiting for {what}: {e:?}"),
        Err(_) => panic!("{what}: not within {limit:?}"),
    }
}

/// Waits until every role's Deployment has an available replica and the aggregator's
/// StatefulSet a ready one.
async fn await_roles(client: &Client, limit: Duration) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    for name in [
        "scanstream-registry",
        "scanstream-ingest",
        "scanstream-scanner",
        "scanstream-scheduler",
    ] {
        wait(
            &format!("{name} available"),
            limit,
            await_condition(deployments.clone(), name, |d: Option<&Deployment>| {
                d.and_then(|d| d.status.as_ref())
                    .and_then(|s| s.available_replicas)
                    .is_some_and(|n| n >= 1)
            }),
        )
        .await;
    }
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NAMESPACE);
    wait(
        "aggregator ready",
        limit,
        await_condition(sets, "scanstream-aggregator", |s: Option<&StatefulSet>| {
            s.and_then(|s| s.status.as_ref())
                .and_then(|s| s.ready_replicas)
                .is_some_and(|n| n >= 1)
        }),
    )
    .await;
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn reads_every_document_and_moves_strimzi_into_the_scanstream_namespace() {
    let text = "---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: strimzi-cluster-operator\n  namespace: myproject\n---\n# only a comment\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: strimzi\nsubjects:\n  - kind: ServiceAccount\n    name: strimzi-cluster-operator\n    namespace: myproject\nroleRef:\n  kind: ClusterRole\n  name: strimzi\n  apiGroup: rbac.authorization.k8s.io\n";
    let docs = documents(text, "scanstream");
    assert_eq!(docs.len(), 2);
    assert_eq!(kind_of(&docs[0]), "ServiceAccount");
    assert_eq!(docs[0].namespace().as_deref(), Some("scanstream"));
    assert_eq!(docs[1].data["subjects"][0]["namespace"], "scanstream");
    assert_eq!(docs[1].data["roleRef"]["name"], "strimzi");
}

#[test]
fn the_kind_overlay_builds_into_resources_the_harness_can_apply() {
    // Needs kustomize (kubectl or SCANSTREAM_KUSTOMIZE); tools/validate-manifests checks the
    // overlay's content, this checks that the harness reads every document of it.
    if std::env::var_os("SCANSTREAM_KUSTOMIZE").is_none()
        && std::process::Command::new("kubectl")
            .arg("version")
            .arg("--client")
            .output()
            .is_err()
    {
        eprintln!("skipped: neither SCANSTREAM_KUSTOMIZE nor kubectl is available");
        return;
    }
    let docs = documents(
        &kustomize(&repo_root().join("k8s/overlays/kind")),
        NAMESPACE,
    );
    let kinds: Vec<&str> = docs.iter().map(kind_of).collect();
    for kind in [
        "Namespace",
        "Kafka",
        "KafkaNodePool",
        "KafkaUser",
        "KafkaTopic",
        "Deployment",
        "StatefulSet",
        "Ingress",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    assert!(!kinds.contains(&"ScaledObject"), "kind runs without KEDA");
    assert!(docs.iter().all(|d| !d.name_any().is_empty()));
}

#[test]
fn a_ready_condition_is_read_from_the_status() {
    let ready = serde_json::json!({"status": {"conditions": [{"type": "Warning", "status": "True"}, {"type": "Ready", "status": "True"}]}});
    let not_ready =
        serde_json::json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}});
    assert!(condition_true(&ready, "Ready"));
    assert!(!condition_true(&not_ready, "Ready"));
    assert!(!condition_true(&serde_json::json!({}), "Ready"));
}
