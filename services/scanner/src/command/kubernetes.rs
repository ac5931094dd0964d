//! Runs command engines as Kubernetes Jobs (`scanner.executor = "kubernetes"`), created and
//! watched through the API with the scanner's service account.
//!
//! Each engine run is one Job in the scanner's namespace: the engine's image with the command
//! line as its command; the cache claim mounted read-only at the scanner's `cache_dir` (so the
//! worktree has the same path in the pod) and the scan's output folder mounted writable over
//! its own path in it; the engine's resources; `activeDeadlineSeconds` its timeout;
//! `backoffLimit: 0`; the engine service account with no token; and `ttlSecondsAfterFinished`
//! as a backstop for a Job the scanner could not delete. The scanner waits for the Job to
//! complete or fail, reads the pod's exit status (and its log when it failed), and deletes the
//! Job with its pod.
//!
//! The scanner's Role allows exactly this: Jobs (create, get, list, watch, delete), Pods (get,
//! list) and `pods/log` (get), in its namespace.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, LocalObjectReference,
    PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec, PodTemplateSpec,
    ResourceRequirements, SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams, PropagationPolicy};
use kube::runtime::wait::await_condition;
use scanstream_platform::config::{CommandEngineSettings, KubernetesExecutorSettings};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::{CommandEngine, Executor, Exit, Invocation, LOG_TAIL_BYTES, Ran};
use crate::Error;

/// Labels every engine Job and pod carries.
pub const ENGINE_LABEL: &str = "scanstream.io/engine";
pub const JOB_LABEL: &str = "scanstream.io/job";
pub const RUN_LABEL: &str = "scanstream.io/run";
pub const ATTEMPT_LABEL: &str = "scanstream.io/attempt";
/// The user engine pods run as: the scanner's, so both can write the shared volume.
const ENGINE_UID: i64 = 10001;
/// Time past an engine's timeout the scanner waits for the Job to be marked failed.
const GRACE: Duration = Duration::from_secs(60);

/// Engine runs as Jobs in one namespace.
pub struct KubernetesExecutor {
    client: kube::Client,
    namespace: String,
    settings: KubernetesExecutorSettings,
    /// The scanner's cache folder: the claim's mount path in engine pods as well.
    cache_dir: PathBuf,
}

impl KubernetesExecutor {
    pub fn new(
        client: kube::Client,
        namespace: String,
        settings: KubernetesExecutorSettings,
        cache_dir: &Path,
    ) -> Self {
        Self {
            client,
            namespace,
            settings,
            cache_dir: cache_dir.to_path_buf(),
        }
    }

    /// With the pod's service account (or the local kubeconfig), in `settings.namespace` or
    /// else the client's default namespace (the pod's own).
    pub async fn from_environment(
        settings: KubernetesExecutorSettings,
        cache_dir: &Path,
    ) -> Result<Self, Error> {
        let client = kube::Client::try_default().await.map_err(|e| {
            Error::Kubernetes(format!("no Kubernetes API to create engine Jobs: {e}"))
        })?;
        let namespace = if settings.namespace.is_empty() {
            client.default_namespace().to_owned()
        } else {
            settings.namespace.clone()
        };
        Ok(Self::new(client, namespace, settings, cache_dir))
    }

    /// The Job an engine run is: see the module's documentation.
    pub fn job(
        &self,
        invocation: &Invocation,
        engine: &CommandEngineSettings,
    ) -> Result<Job, Error> {
        let name = job_name(invocation);
        let labels: BTreeMap<String, String> = [
            ("app.kubernetes.io/name", "scanstream-engine"),
            ("app.kubernetes.io/part-of", "scanstream"),
            ("app.kubernetes.io/managed-by", "scanstream-scanner"),
            (ENGINE_LABEL, invocation.engine.as_str()),
            (JOB_LABEL, invocation.job.as_str()),
            (RUN_LABEL, invocation.run.as_str()),
            (ATTEMPT_LABEL, &invocation.attempt.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let output_dir = invocation
            .output
            .parent()
            .ok_or_else(|| Error::Kubernetes("the output has no folder".into()))?;
        let output_sub = output_dir.strip_prefix(&self.cache_dir).map_err(|_| {
            Error::Kubernetes(format!(
                "the worktree {} is not on the cache volume {}",
                output_dir.display(),
                self.cache_dir.display()
            ))
        })?;
        if engine.image.is_empty() {
            return Err(Error::Kubernetes(format!(
                "[engines.{}] has no image for the kubernetes executor",
                engine.id
            )));
        }
        let quantity = |q: &str| Quantity(q.to_owned());
        let resources = ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), quantity(&engine.cpu_request)),
                ("memory".to_owned(), quantity(&engine.memory_request)),
            ])),
            limits: Some(BTreeMap::from([
                ("cpu".to_owned(), quantity(&engine.cpu_limit)),
                ("memory".to_owned(), quantity(&engine.memory_limit)),
            ])),
            ..ResourceRequirements::default()
        };
        let mut env = vec![
            env_var("HOME", "/tmp"),
            env_var("TMPDIR", "/tmp"),
            env_var("LANG", "C.UTF-8"),
        ];
        env.extend(invocation.env.iter().map(|(k, v)| env_var(k, v)));
        let mut argv = invocation.argv.clone();
        if invocation.output_from_stdout {
            // The pod's standard output is its log: the shell sends it to the output file.
            argv = vec![
                "/bin/sh".into(),
                "-c".into(),
                "exec \"$@\" > \"$SCANSTREAM_OUTPUT\"".into(),
                "engine".into(),
            ]
            .into_iter()
            .chain(argv)
            .collect();
            env.push(env_var(
                "SCANSTREAM_OUTPUT",
                &invocation.output.display().to_string(),
            ));
        }
        let container = Container {
            name: "engine".into(),
            image: Some(engine.image.clone()),
            command: Some(argv),
            working_dir: Some(invocation.worktree.display().to_string()),
            env: Some(env),
            resources: Some(resources),
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: Some(true),
                run_as_non_root: Some(true),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    ..Capabilities::default()
                }),
                ..SecurityContext::default()
            }),
            volume_mounts: Some(vec![
                VolumeMount {
                    name: "cache".into(),
                    mount_path: self.cache_dir.display().to_string(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                },
                VolumeMount {
                    name: "cache".into(),
                    mount_path: output_dir.display().to_string(),
                    sub_path: Some(output_sub.display().to_string()),
                    read_only: Some(false),
                    ..VolumeMount::default()
                },
                VolumeMount {
                    name: "tmp".into(),
                    mount_path: "/tmp".into(),
                    ..VolumeMount::default()
                },
            ]),
            ..Container::default()
        };
        let pod = PodSpec {
            restart_policy: Some("Never".into()),
            service_account_name: Some(self.settings.service_account.clone()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(ENGINE_UID),
                run_as_group: Some(ENGINE_UID),
                fs_group: Some(ENGINE_UID),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            image_pull_secrets: (!self.settings.image_pull_secrets.is_empty()).then(|| {
                self.settings
                    .image_pull_secrets
                    .iter()
                    .map(|name| LocalObjectReference { name: name.clone() })
                    .collect()
            }),
            containers: vec![container],
            volumes: Some(vec![
                Volume {
                    name: "cache".into(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: self.settings.cache_claim.clone(),
                        read_only: Some(false),
                    }),
                    ..Volume::default()
                },
                Volume {
                    name: "tmp".into(),
                    empty_dir: Some(EmptyDirVolumeSource {
                        size_limit: Some(quantity("1Gi")),
                        ..EmptyDirVolumeSource::default()
                    }),
                    ..Volume::default()
                },
            ]),
            ..PodSpec::default()
        };
        Ok(Job {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(self.namespace.clone()),
                labels: Some(labels.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(JobSpec {
                backoff_limit: Some(0),
                active_deadline_seconds: Some(
                    i64::try_from(invocation.timeout.as_secs().max(1)).unwrap_or(i64::MAX),
                ),
                ttl_seconds_after_finished: Some(self.settings.ttl_seconds_after_finished),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(pod),
                },
                ..JobSpec::default()
            }),
            ..Job::default()
        })
    }

    async fn create(&self, jobs: &Api<Job>, job: &Job) -> Result<(), Error> {
        match jobs.create(&PostParams::default(), job).await {
            Ok(_) => Ok(()),
            // Left by an earlier try of the same attempt: replaced.
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let name = job.metadata.name.clone().unwrap_or_default();
                self.delete(jobs, &name).await;
                let gone = await_condition(jobs.clone(), &name, |j: Option<&Job>| j.is_none());
                let _ = tokio::time::timeout(Duration::from_secs(30), gone).await;
                jobs.create(&PostParams::default(), job)
                    .await
                    .map(|_| ())
                    .map_err(|e| Error::Kubernetes(format!("creating Job {name}: {e}")))
            }
            Err(e) => Err(Error::Kubernetes(format!("creating an engine Job: {e}"))),
        }
    }

    async fn delete(&self, jobs: &Api<Job>, name: &str) {
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        if let Err(e) = jobs.delete(name, &params).await
            && !matches!(&e, kube::Error::Api(s) if s.code == 404)
        {
            tracing::warn!(job = name, error = %e, "engine Job not deleted; its ttlSecondsAfterFinished removes it");
        }
    }

    /// The Job's pod's exit status and, when asked, its log's tail.
    async fn pod_outcome(&self, name: &str, want_log: bool) -> (Option<i32>, String) {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let listed = pods
            .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={name}")))
            .await;
        let Ok(listed) = listed else {
            return (None, String::new());
        };
        let Some(pod) = listed.items.into_iter().next() else {
            return (None, String::new());
        };
        let code = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first())
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code);
        let mut log = String::new();
        if want_log && let Some(pod_name) = pod.metadata.name.as_deref() {
            let params = LogParams {
                limit_bytes: Some(i64::try_from(LOG_TAIL_BYTES).unwrap_or(i64::MAX)),
                tail_lines: Some(200),
                ..LogParams::default()
            };
            log = pods.logs(pod_name, &params).await.unwrap_or_default();
        }
        (code, log)
    }
}

fn env_var(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        ..EnvVar::default()
    }
}

/// `scanstream-<engine>-<12 hex>`: the same for the same engine, job, run and attempt.
pub fn job_name(invocation: &Invocation) -> String {
    let digest = Sha256::digest(format!(
        "{}\n{}\n{}\n{}",
        invocation.engine, invocation.job, invocation.run, invocation.attempt
    ));
    format!(
        "scanstream-{}-{}",
        invocation.engine,
        &hex::encode(digest)[..12]
    )
}

/// How a Job ended, from its conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Complete,
    DeadlineExceeded,
    Failed,
}

fn ended(job: &Job) -> Option<Ended> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .filter(|c| c.status == "True")
        .find_map(|c| match (c.type_.as_str(), c.reason.as_deref()) {
            ("Complete", _) => Some(Ended::Complete),
            ("Failed", Some("DeadlineExceeded")) => Some(Ended::DeadlineExceeded),
            ("Failed", _) => Some(Ended::Failed),
            _ => None,
        })
}

impl Executor for KubernetesExecutor {
    fn run<'a>(
        &'a self,
        invocation: &'a Invocation,
        engine: &'a CommandEngine,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<Ran, Error>> {
        Box::pin(async move {
            let jobs: Api<Job> = Api::namespaced(self.client.clone(), &self.namespace);
            let job = match self.job(invocation, &engine.settings) {
                Ok(job) => job,
                Err(e) => return Ok(Ran::failed(e.to_string())),
            };
            let name = job.metadata.name.clone().unwrap_or_default();
            if let Err(e) = self.create(&jobs, &job).await {
                return Ok(Ran::failed(e.to_string()));
            }
            tracing::debug!(job = %name, engine = %invocation.engine, "engine Job created");
            let finished = await_condition(jobs.clone(), &name, |j: Option<&Job>| {
                j.and_then(ended).is_some()
            });
            let waited = tokio::select! {
                waited = tokio::time::timeout(invocation.timeout + GRACE, finished) => waited,
                _ = cancel.cancelled() => {
                    self.delete(&jobs, &name).await;
                    return Err(Error::Cancelled);
                }
            };
            let exit = match waited {
                Err(_) => Exit::TimedOut,
                Ok(Err(e)) => Exit::Failed(format!("watching Job {name} failed: {e}")),
                Ok(Ok(job)) => match job.as_ref().and_then(ended) {
                    Some(Ended::Complete) => Exit::Status(0),
                    Some(Ended::DeadlineExceeded) => Exit::TimedOut,
                    _ => Exit::Failed(String::new()),
                },
            };
            let (exit, log_tail) = match exit {
                Exit::Failed(reason) if reason.is_empty() => {
                    // Failed: a non-zero status may still be a success of this engine.
                    match self.pod_outcome(&name, true).await {
                        (Some(code), log) => (Exit::Status(code), log),
                        (None, log) => (
                            Exit::Failed(format!("Job {name} failed before its container ran")),
                            log,
                        ),
                    }
                }
                Exit::TimedOut => (Exit::TimedOut, self.pod_outcome(&name, true).await.1),
                other => (other, String::new()),
            };
            self.delete(&jobs, &name).await;
            Ok(Ran { exit, log_tail })
        })
    }

    /// The image names the version of an engine in a Job.
    fn version<'a>(&'a self, engine: &'a CommandEngineSettings) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move { (!engine.image.is_empty()).then(|| engine.image.clone()) })
    }
}
