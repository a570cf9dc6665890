//! What a reviewer of a promotion change needs to know, computed without touching a registry or
//! a store except in [`check_images_online`] and [`check_files_online`], which only read
//! (`ferry validate`, see `docs/review.md`):
//! - [`Policy`]: the project's rules, read strictly from `policy.yaml` beside the manifests;
//! - [`diff_images`] and [`diff_files`]: two versions of the manifests (at a git revision and in
//!   the working tree) compared into [`Finding`]s (what the change may not do: move a tag, remove a
//!   digest, change a file's sha256) and what it adds, with the edges a postsubmit will promote;
//! - [`base_tree`]: the manifests as they are at a git revision, read with `git archive`;
//! - [`images_since`] and [`files_since`]: the working tree's manifests reduced to what a change
//!   adds, for `ferry promote ... --since REV`;
//! - [`check_images_online`] and [`check_files_online`]: what a change promotes, read from its
//!   sources (`ferry validate --online`).

mod diff;
mod git;
mod online;
mod policy;
mod since;

use std::fmt;
use std::path::PathBuf;

pub use diff::{check_file_sources, check_image_sources, diff_files, diff_images, relocate_files, relocate_images};
pub use git::{base_tree, repository_root, revision, BaseTree, GitError, Revision};
pub use online::{check_files_online, check_images_online};
pub use policy::{load_policy, Policy, RequireSignatures, POLICY_FILE};
pub use since::{added_files, added_images, files_since, images_since, SinceError};

/// Something wrong with a change, at the file and (where one applies) the 1-based line to fix.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// The file at fault, in the working tree (a file the change deleted is named all the same).
    pub path: PathBuf,
    /// The 1-based line at fault; `None` when the problem is the whole file or what is gone.
    pub line: Option<usize>,
    /// What is wrong, for people.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Something a change adds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Added {
    /// `image`, `digest`, `tag`, `destination` or `file`.
    pub kind: &'static str,
    /// What is added: `NAME`, `NAME@DIGEST`, `NAME:TAG`, a registry or store, a file name.
    pub name: String,
    /// Where it is written in the working tree.
    pub path: PathBuf,
    /// The 1-based line there, when known.
    pub line: Option<usize>,
}

/// One copy the postsubmit will make: `from` (in the source) to `to` (in a destination).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Edge {
    /// `REGISTRY/NAME@DIGEST`, or `STORE/FILE`.
    pub from: String,
    /// `REGISTRY/NAME:TAG` or `REGISTRY/NAME@DIGEST`, or `STORE/FILE`.
    pub to: String,
}

impl fmt::Display for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.from, self.to)
    }
}

/// The comparison of two versions of the manifests.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Review {
    /// What the change may not do, by file and line.
    pub findings: Vec<Finding>,
    /// What it adds, in manifest order.
    pub added: Vec<Added>,
    /// The copies that promote what it adds, sorted.
    pub edges: Vec<Edge>,
}

/// Manifest trees for the tests of this crate's modules.
#[cfg(test)]
mod test_trees {
    use ferry_manifest::PromotionManifest;

    /// A thin directory of `(project, destinations, images.yaml)`, loaded.
    pub(crate) fn thin(projects: &[(&str, &[&str], &str)]) -> (tempfile::TempDir, Vec<PromotionManifest>) {
        let dir = tempfile::tempdir().unwrap();
        for (project, destinations, images) in projects {
            let mut registries = "registries:\n- name: staging.example/p\n  src: true\n".to_string();
            for d in *destinations {
                registries += &format!("- name: {d}\n");
            }
            let manifests = dir.path().join("manifests").join(project);
            std::fs::create_dir_all(&manifests).unwrap();
            std::fs::write(manifests.join("promoter-manifest.yaml"), registries).unwrap();
            let image_dir = dir.path().join("images").join(project);
            std::fs::create_dir_all(&image_dir).unwrap();
            std::fs::write(image_dir.join("images.yaml"), images).unwrap();
        }
        let loaded = ferry_manifest::load_thin_dir(dir.path()).unwrap();
        (dir, loaded)
    }

    /// A file-promotion directory with one project `p`, loaded.
    pub(crate) fn files_tree(stores: &str, files: &str) -> (tempfile::TempDir, Vec<ferry_manifest::FileManifest>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("filestores/p")).unwrap();
        std::fs::create_dir_all(dir.path().join("manifests/p")).unwrap();
        std::fs::write(dir.path().join("filestores/p/filepromoter-manifest.yaml"), stores).unwrap();
        std::fs::write(dir.path().join("manifests/p/files.yaml"), files).unwrap();
        let loaded = ferry_manifest::load_files_dir(dir.path()).unwrap();
        (dir, loaded)
    }
}
