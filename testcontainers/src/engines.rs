//! The command engines tests run next to the built-in one (gitleaks and semgrep), installed
//! once by `tools/engines` from the Go module proxy and PyPI and cached.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, Result};

/// Where the engines' executables are.
#[derive(Debug, Clone)]
pub struct Engines {
    pub gitleaks: PathBuf,
    pub semgrep: PathBuf,
}

/// Installs the engines if they are not yet (minutes the first time), then names them.
pub fn installed() -> Result<Engines> {
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/engines");
    let output = Command::new(&tool)
        .output()
        .map_err(Error::io(format!("running {}", tool.display())))?;
    if !output.status.success() {
        return Err(Error::tool("engines", &output.stderr));
    }
    let paths: HashMap<String, PathBuf> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(name, path)| (name.to_owned(), PathBuf::from(path)))
        .collect();
    let path = |name: &str| {
        paths
            .get(name)
            .cloned()
            .ok_or_else(|| Error::Config(format!("tools/engines named no {name}")))
    };
    Ok(Engines {
        gitleaks: path("gitleaks")?,
        semgrep: path("semgrep")?,
    })
}
