//! `scanstream scan --staged`: what the next commit would add, read with git from the index.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

/// A staged file: its path, its staged content and the lines the commit adds to it (1-based).
#[derive(Debug)]
pub struct Staged {
    pub path: String,
    pub content: Vec<u8>,
    pub added: Vec<u32>,
}

/// Runs git in `root` and returns its standard output.
fn git(root: &Path, args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let output = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .context("cannot run git (--staged reads the index with git: is it installed?)")?;
    if !output.status.success() {
        bail!(
            "git {} failed in {}: {}",
            args.first().copied().unwrap_or_default(),
            root.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output.stdout)
}

/// The files staged for the next commit in the repository whose work tree is `root` (added,
/// copied, modified; renames count as added), with their staged content and added lines.
pub fn staged(root: &Path) -> anyhow::Result<Vec<Staged>> {
    let names = git(
        root,
        &[
            "diff",
            "--cached",
            "--name-only",
            "-z",
            "--no-renames",
            "--diff-filter=ACM",
        ],
    )?;
    let mut files = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let path = String::from_utf8_lossy(name).into_owned();
        let literal = format!(":(literal){path}");
        let content = git(root, &["cat-file", "blob", &format!(":{path}")])?;
        let diff = git(
            root,
            &[
                "diff",
                "--cached",
                "-U0",
                "--no-color",
                "--no-ext-diff",
                "--no-renames",
                "--",
                &literal,
            ],
        )?;
        let added = added_lines(&String::from_utf8_lossy(&diff));
        files.push(Staged {
            path,
            content,
            added,
        });
    }
    Ok(files)
}

/// The new-side line numbers of the hunks of a `-U0` diff: `@@ -a,b +c,d @@` adds lines
/// c..c+d (d is 1 when left out).
fn added_lines(diff: &str) -> Vec<u32> {
    let mut lines = Vec::new();
    for hunk in diff.lines().filter(|l| l.starts_with("@@ ")) {
        let Some(new) = hunk.split(' ').find(|part| part.starts_with('+')) else {
            continue;
        };
        let mut numbers = new[1..].splitn(2, ',');
        let (Some(Ok(start)), count) = (
            numbers.next().map(str::parse::<u32>),
            numbers.next().map_or(Ok(1), str::parse::<u32>),
        ) else {
            continue;
        };
        lines.extend(start..start.saturating_add(count.unwrap_or(0)));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hunk_headers_give_the_added_lines() {
        let diff = "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -0,0 +1,3 @@\n+a\n+b\n+c\n\
                    @@ -10 +12 @@ fn f()\n-x\n+y\n@@ -20,2 +23,0 @@\n-p\n-q\n";
        assert_eq!(added_lines(diff), vec![1, 2, 3, 12]);
    }
}
