//! A git repository for tests of review-time commands (`validate --base`, `promote --since`).

use std::path::Path;
use std::process::Command;

/// Runs `git -C repo ARGS` as a fixed test identity (no signing), failing the test with git's
/// own message when it fails.
pub fn git(repo: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"])
        .args(args)
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}
