//! The Kubernetes executor on a real control plane (`tools/kube-up`: API server with RBAC,
//! controller manager, scheduler, kwok nodes). The scanner's side runs as its service account
//! with the Role `k8s/base/engines.yaml` ships. Nothing runs inside kwok's pods, so the test
//! plays the engine container: when an engine pod is running it writes the SARIF into the output
//! folder the pod mounts and ends the pod; the `stuck` engine's pod it leaves running into its
//! Job's deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::Discovery;
use kube::{Client, Config, ResourceExt};
use scanstream_contracts::command::ScanMode;
use scanstream_contracts::event::EngineOutcome;
use scanstream_platform::config::{EngineSettings, Executor, KubernetesExecutorSettings};
use scanstream_scanner::command::kubernetes::ENGINE_LABEL;
use scanstream_scanner::command::worktree::Bounds;
use scanstream_scanner::command::{
    CommandEngines, KubernetesExecutor, Labels, ScanContext, Workspace,
};
use scanstream_scanner::runner::Limits;
use scanstream_scanner::scan::Scanning;
use scanstream_testcontainers::kube::ControlPlane;
use serde_json::json;
use tokio_util::sync::CancellationToken;

mod support;

const NAMESPACE: &str = "scanstream";
const SCANNER: &str = "system:serviceaccount:scanstream:scanstream-scanner";
const CLAIM: &str = "scanstream-repo-cache";
const MANAGER: &str = "engine-jobs-test";

async fn admin_config(plane: &ControlPlane) -> Config {
    let kubeconfig = Kubeconfig::read_from(plane.kubeconfig()).unwrap();
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap()
}

/// Applies the ServiceAccounts, Role and RoleBinding the base ships, in the namespace.
async fn apply_engine_rbac(client: &Client) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../k8s/base/engines.yaml");
    let text = std::fs::read_to_string(root).unwrap();
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let value: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
        let object: DynamicObject = serde_json::from_value(value).unwrap();
        let types = object.types.clone().unwrap();
        let gvk = GroupVersionKind::try_from(&types).unwrap();
        let (resource, _) = discovery.resolve_gvk(&gvk).unwrap();
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), NAMESPACE, &resource);
        api.patch(
            &object.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
        .unwrap();
    }
}

/// The cache claim, bound to a volume (no provisioner runs).
async fn bound_claim(client: &Client) {
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NAMESPACE);
    let volume: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": "pv-cache"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteMany"],
            "storageClassName": "shared",
            "hostPath": {"path": "/var/lib/fake/cache"},
            "claimRef": {"namespace": NAMESPACE, "name": CLAIM},
        }
    }))
    .unwrap();
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": CLAIM},
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": "shared",
            "volumeName": "pv-cache",
            "resources": {"requests": {"storage": "1Gi"}},
        }
    }))
    .unwrap();
    volumes
        .create(&PostParams::default(), &volume)
        .await
        .unwrap();
    claims.create(&PostParams::default(), &claim).await.unwrap();
}

/// Whether `user` may `verb` `resource` (`sub` a subresource) in `namespace`.
async fn may(client: &Client, verb: &str, resource: &str, sub: &str, namespace: &str) -> bool {
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let (group, resource) = resource.split_once('/').unwrap_or(("", resource));
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                subresource: (!sub.is_empty()).then(|| sub.into()),
                namespace: Some(namespace.into()),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let answer = reviews
        .create(&PostParams::default(), &review)
        .await
        .unwrap();
    answer.status.is_some_and(|s| s.allowed)
}

const SARIF: &str = r#"{"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "fake"}},
  "results": [{"ruleId": "planted-token", "level": "error", "message": {"text": "a token"},
    "locations": [{"physicalLocation": {"artifactLocation": {"uri": "WORKTREE/config/app.env"},
      "region": {"startLine": 2, "snippet": {"text": "tok_live_4f9a8b7c6d5e4f3a2b1c"}}}}]}]}]}"#;

/// Plays the engine containers: each engine pod that runs gets its SARIF written where its
/// output mount is, and then ends with status 0; `stuck` pods are left running. Returns the pods
/// seen.
fn play_engines(client: Client, stop: CancellationToken) -> Arc<Mutex<Vec<Pod>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = seen.clone();
    tokio::spawn(async move {
        let pods: Api<Pod> = Api::namespaced(client, NAMESPACE);
        let mut played: HashSet<String> = HashSet::new();
        while !stop.is_cancelled() {
            let listed = pods
                .list(&ListParams::default().labels(ENGINE_LABEL))
                .await
                .unwrap();
            for pod in listed.items {
                let name = pod.name_any();
                let running =
                    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                if !running || !played.insert(name.clone()) {
                    continue;
                }
                out.lock().unwrap().push(pod.clone());
                let engine = pod.labels()[ENGINE_LABEL].clone();
                if engine == "stuck" {
                    continue;
                }
                let container = &pod.spec.as_ref().unwrap().containers[0];
                let output = container
                    .volume_mounts
                    .as_ref()
                    .unwrap()
                    .iter()
                    .find(|m| m.sub_path.is_some())
                    .unwrap();
                let worktree = container.working_dir.clone().unwrap();
                std::fs::write(
                    PathBuf::from(&output.mount_path).join(format!("{engine}.sarif")),
                    SARIF.replace("WORKTREE", &worktree),
                )
                .unwrap();
                let now = "2026-11-28T12:00:00Z";
                let status = json!({"status": {
                    "phase": "Succeeded",
                    "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted"}],
                    "containerStatuses": [{
                        "name": "engine", "image": container.image, "imageID": "", "ready": false,
                        "restartCount": 0, "started": false,
                        "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                                  "startedAt": now, "finishedAt": now}}
                    }]
                }});
                pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await
                    .unwrap();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    seen
}

fn engine(text: &str, id: &str) -> scanstream_platform::config::CommandEngineSettings {
    let settings: EngineSettings =
        serde_json::from_value(serde_json::from_str(text).unwrap()).unwrap();
    settings.resolve(id).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_jobs_run_as_the_scanner_with_only_its_role_and_are_cleaned_up() {
    let plane = ControlPlane::start().expect("a control plane (tools/kube-up)");
    let admin = Client::try_from(admin_config(&plane).await).unwrap();
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": NAMESPACE}})).unwrap();
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    apply_engine_rbac(&admin).await;
    bound_claim(&admin).await;
    let mut as_scanner = admin_config(&plane).await;
    as_scanner.auth_info.impersonate = Some(SCANNER.into());
    let scanner = Client::try_from(as_scanner).unwrap();

    // The Role suffices for what the executor does (below) and allows nothing more.
    for (verb, resource, sub) in [
        ("create", "batch/jobs", ""),
        ("watch", "batch/jobs", ""),
        ("delete", "batch/jobs", ""),
        ("list", "pods", ""),
        ("get", "pods", "log"),
    ] {
        assert!(
            may(&scanner, verb, resource, sub, NAMESPACE).await,
            "{verb} {resource}/{sub}"
        );
    }
    for (verb, resource, sub, namespace) in [
        ("create", "batch/jobs", "", "default"),
        ("update", "batch/jobs", "", NAMESPACE),
        ("create", "pods", "", NAMESPACE),
        ("create", "pods", "exec", NAMESPACE),
        ("get", "secrets", "", NAMESPACE),
        ("create", "batch/cronjobs", "", NAMESPACE),
        ("patch", "pods", "status", NAMESPACE),
    ] {
        assert!(
            !may(&scanner, verb, resource, sub, namespace).await,
            "{verb} {resource}/{sub} in {namespace}"
        );
    }

    // A repository, resolved as a scan would.
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    std::fs::create_dir_all(repo.join("config")).unwrap();
    std::fs::write(
        repo.join("config/app.env"),
        "NAME=app\nTOKEN=tok_live_4f9a8b7c6d5e4f3a2b1c\n",
    )
    .unwrap();
    support::git(&repo, &["init", "-q", "-b", "main"], None);
    support::git(&repo, &["add", "-A"], None);
    support::git(&repo, &["commit", "-q", "-m", "app"], None);
    let scanning = Scanning::new(vec![], None, Limits::default(), Default::default(), vec![]);
    let resolved = scanning.resolve(&repo, None, ScanMode::Tree).unwrap();
    let cache_dir = work.path().join("cache");

    let settings = KubernetesExecutorSettings {
        namespace: NAMESPACE.into(),
        ttl_seconds_after_finished: 120,
        ..KubernetesExecutorSettings::default()
    };
    let executor = KubernetesExecutor::new(scanner.clone(), NAMESPACE.into(), settings, &cache_dir);
    let fake = engine(
        r#"{"command": ["fake-engine", "--report", "{output}", "{worktree}"], "image": "registry.example/fake-engine:1.2",
            "timeout_seconds": 60, "cpu_request": "100m", "cpu_limit": "500m", "memory_request": "64Mi", "memory_limit": "128Mi"}"#,
        "fake",
    );
    let stuck = engine(
        r#"{"command": ["sleep-forever", "{worktree}", "{output}"], "image": "registry.example/stuck:1", "timeout_seconds": 3}"#,
        "stuck",
    );
    let commands = CommandEngines::new(
        vec![fake, stuck],
        Arc::new(executor),
        Executor::Kubernetes,
        Workspace {
            cache_dir: cache_dir.clone(),
            bounds: Bounds {
                max_bytes: 1 << 20,
                timeout: Duration::from_secs(30),
            },
            repo_config: false,
        },
        b"test-key",
        None,
    )
    .await;

    let stop = CancellationToken::new();
    let pods = play_engines(admin.clone(), stop.clone());
    // The Jobs as the scanner made them, read while they exist.
    let jobs: Api<Job> = Api::namespaced(admin.clone(), NAMESPACE);
    let made: Arc<Mutex<BTreeMap<String, Job>>> = Arc::default();
    let watcher = {
        let (jobs, made, stop) = (jobs.clone(), made.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                for job in jobs.list(&ListParams::default()).await.unwrap().items {
                    made.lock().unwrap().entry(job.name_any()).or_insert(job);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let started = Instant::now();
    let scan = ScanContext {
        resolved: &resolved,
        labels: Labels {
            job: "6f1c0d52-1111-4222-8333-944445555666".into(),
            run: "7a2b1c3d-1111-4222-8333-944445555666".into(),
            attempt: 1,
        },
    };
    let runs = commands
        .run(
            &["fake".into(), "stuck".into()],
            scan,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    let took = started.elapsed();
    stop.cancel();
    let _ = watcher.await;

    // The watch saw the played engine finish and the stuck one reach its deadline.
    assert_eq!(runs.len(), 2);
    let (fake, stuck) = (&runs[0], &runs[1]);
    assert_eq!(fake.outcome, EngineOutcome::Completed, "{fake:?}");
    assert_eq!(
        fake.version.as_deref(),
        Some("registry.example/fake-engine:1.2")
    );
    assert_eq!(fake.found.len(), 1, "{fake:?}");
    let found = &fake.found[0];
    assert_eq!(
        (found.place.path.as_str(), found.hit.line),
        ("config/app.env", 2)
    );
    assert_eq!(found.hit.rule, "fake/planted-token");
    assert!(!found.hit.preview.contains("4f9a8b7c6d5e"), "{found:?}");
    assert_eq!(stuck.outcome, EngineOutcome::TimedOut, "{stuck:?}");
    assert!(took < Duration::from_secs(50), "{took:?}");

    // The Job spec: image, command, mounts, limits, deadline, labels, account.
    let made = made.lock().unwrap().clone();
    assert_eq!(made.len(), 2, "{:?}", made.keys());
    let job = made
        .values()
        .find(|j| j.labels()[ENGINE_LABEL] == "fake")
        .unwrap();
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.backoff_limit, Some(0));
    assert_eq!(spec.active_deadline_seconds, Some(60));
    assert_eq!(spec.ttl_seconds_after_finished, Some(120));
    assert_eq!(
        job.labels()["scanstream.io/job"],
        "6f1c0d52-1111-4222-8333-944445555666"
    );
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("scanstream-engine")
    );
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    let container = &pod.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("registry.example/fake-engine:1.2")
    );
    let command = container.command.clone().unwrap();
    assert_eq!(command[0], "fake-engine");
    let worktree = container.working_dir.clone().unwrap();
    assert!(
        worktree.starts_with(&cache_dir.display().to_string()),
        "{worktree}"
    );
    assert_eq!(command[3], worktree);
    let mounts = container.volume_mounts.clone().unwrap();
    let cache = mounts
        .iter()
        .find(|m| m.mount_path == cache_dir.display().to_string())
        .unwrap();
    assert_eq!(
        (cache.name.as_str(), cache.read_only),
        ("cache", Some(true))
    );
    let output = mounts.iter().find(|m| m.sub_path.is_some()).unwrap();
    assert_ne!(
        output.read_only,
        Some(true),
        "the output folder is writable"
    );
    assert!(command[2].starts_with(&output.mount_path), "{command:?}");
    let claim = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "cache")
        .unwrap();
    assert_eq!(
        claim.persistent_volume_claim.as_ref().unwrap().claim_name,
        CLAIM
    );
    let resources = container.resources.clone().unwrap();
    assert_eq!(resources.limits.unwrap()["memory"].0, "128Mi");
    assert_eq!(resources.requests.unwrap()["cpu"].0, "100m");
    let security = container.security_context.clone().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert!(pods.lock().unwrap().len() >= 2);

    // Cleaned up: no Job left, and the worktree is gone.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = jobs.list(&ListParams::default()).await.unwrap().items;
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Jobs left: {:?}",
            left.iter().map(|j| j.name_any()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let worktrees: Vec<_> = std::fs::read_dir(cache_dir.join("worktrees"))
        .unwrap()
        .flatten()
        .collect();
    assert!(worktrees.is_empty(), "{worktrees:?}");
}
