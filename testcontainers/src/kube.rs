//! A real Kubernetes control plane for tests: `tools/kube-up` (etcd, kube-apiserver with TLS
//! and RBAC, kube-controller-manager, kube-scheduler and three kwok fake nodes, built once from
//! the Go module proxy and cached) started in a folder of its own, and stopped when the fixture
//! is dropped. Tests reach it through [`ControlPlane::kubeconfig`].

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, Result};

/// A running control plane; dropping it stops every process of it.
pub struct ControlPlane {
    dir: tempfile::TempDir,
    tool: PathBuf,
}

impl ControlPlane {
    /// Starts one (building the binaries first if this machine has none cached: minutes).
    pub fn start() -> Result<ControlPlane> {
        let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/kube-up");
        let dir = tempfile::tempdir().map_err(Error::io("creating the control plane's folder"))?;
        let output = Command::new(&tool)
            .arg(dir.path())
            // Its watcher stops the plane once this process is gone, however it ended.
            .env("KUBE_UP_OWNER", std::process::id().to_string())
            .output()
            .map_err(Error::io(format!("running {}", tool.display())))?;
        let plane = ControlPlane { dir, tool };
        if !output.status.success() {
            return Err(Error::tool("kube-up", &output.stderr));
        }
        Ok(plane)
    }

    /// The cluster admin's kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = Command::new(&self.tool)
            .arg("--stop")
            .arg(self.dir.path())
            .output();
    }
}
