//! The manifests at a git revision, read with `git archive` (no checkout, no change to the
//! repository).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Why the manifests at a revision cannot be read: no git, not a repository, no such revision.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct GitError(String);

/// A directory as it is at a revision, unpacked into a temporary directory that lives as long as
/// this.
#[derive(Debug)]
pub struct BaseTree {
    _temp: tempfile::TempDir,
    /// The directory at the revision; `None` when it did not exist then (everything is added).
    pub dir: Option<PathBuf>,
}

fn git(dir: &Path, args: &[&str]) -> Result<Output, GitError> {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| GitError(format!("cannot run git (is it installed and on PATH?): {e}")))
}

fn stdout_line(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim_end_matches(['\n', '\r']).to_string()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).trim().to_string()
}

/// The root of the git repository holding `dir`.
pub fn repository_root(dir: &Path) -> Result<PathBuf, GitError> {
    let out = git(dir, &["rev-parse", "--show-toplevel"])?;
    if !out.status.success() {
        return Err(GitError(format!("{} is not in a git repository: {}", dir.display(), stderr(&out))));
    }
    Ok(PathBuf::from(stdout_line(&out)))
}

/// The commit checked out in the repository holding `dir`, and whether `dir` has changes not
/// committed (for run records); `None` when `dir` is not in a git repository or git is missing.
pub fn revision(dir: &Path) -> Option<Revision> {
    let head = git(dir, &["rev-parse", "--verify", "--quiet", "HEAD"]).ok().filter(|o| o.status.success())?;
    let status = git(dir, &["status", "--porcelain", "--", "."]).ok().filter(|o| o.status.success())?;
    Some(Revision { commit: stdout_line(&head), dirty: !status.stdout.is_empty() })
}

/// A git revision of the manifests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revision {
    /// The commit (full hex).
    pub commit: String,
    /// Whether the directory differs from the commit (files changed or not yet added).
    pub dirty: bool,
}

/// `dir` (a directory of a git repository) as it is at revision `rev`.
pub fn base_tree(dir: &Path, rev: &str) -> Result<BaseTree, GitError> {
    repository_root(dir)?;
    if rev.starts_with('-') {
        return Err(GitError(format!("bad revision {rev:?}")));
    }
    let commit = git(dir, &["rev-parse", "--verify", "--quiet", "--end-of-options", &format!("{rev}^{{commit}}")])?;
    if !commit.status.success() {
        return Err(GitError(format!(
            "bad revision {rev:?}: no such commit in the repository holding {}",
            dir.display()
        )));
    }
    let commit = stdout_line(&commit);
    // DIR's path inside the repository, with a trailing `/` (empty at the root).
    let prefix = git(dir, &["rev-parse", "--show-prefix"])?;
    if !prefix.status.success() {
        return Err(GitError(format!("cannot place {} in its repository: {}", dir.display(), stderr(&prefix))));
    }
    let prefix = stdout_line(&prefix);
    let temp = tempfile::tempdir().map_err(|e| GitError(format!("cannot make a temporary directory: {e}")))?;
    let root = git(dir, &["rev-parse", "--show-toplevel"])?;
    let root = PathBuf::from(stdout_line(&root));

    let spec = format!("{commit}:{prefix}");
    let exists = git(&root, &["cat-file", "-e", &spec])?;
    if !exists.status.success() {
        return Ok(BaseTree { _temp: temp, dir: None });
    }
    let mut args = vec!["archive", "--format=tar", commit.as_str()];
    if !prefix.is_empty() {
        args.extend(["--", prefix.as_str()]);
    }
    let archive = git(&root, &args)?;
    if !archive.status.success() {
        return Err(GitError(format!("git archive {commit} {prefix} failed: {}", stderr(&archive))));
    }
    tar::Archive::new(archive.stdout.as_slice())
        .unpack(temp.path())
        .map_err(|e| GitError(format!("cannot unpack the manifests at {rev}: {e}")))?;
    let dir = temp.path().join(&prefix);
    Ok(BaseTree { _temp: temp, dir: Some(dir) })
}
