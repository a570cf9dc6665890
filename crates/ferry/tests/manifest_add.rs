//! `ferry manifest add` as a maintainer runs it, against a real registry: tags are resolved in
//! the project's staging registry and added to a commented, hand-formatted `images.yaml`, which
//! keeps its comments and order (compared byte for byte); a second run changes nothing; a tag
//! bound to another digest is refused (exit 1, file:line); an unknown tag or project exits 2.
//! The editing itself is tested case by case in crates/ferry-manifest/src/edit.rs.

use std::path::Path;
use std::process::{Command, Output};

use ferry_testkit::images::{push, repo, ImageSpec};
use ferry_testkit::registry_server::RegistryServer;

fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry")).args(args).output().expect("run ferry")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(path: &Path, contents: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

#[tokio::test]
async fn tags_are_resolved_in_staging_and_added_keeping_the_file() {
    let server = RegistryServer::start().await.unwrap();
    let client = ferry_registry::remote::RemoteClient::new(Default::default()).unwrap();
    let staging = client.registry(&server.host(), Some(repo("staging")));
    let old = ImageSpec::single("old", 512).build();
    let new = ImageSpec::two_arch("new", 1024, 256).build();
    push(&staging, &repo("agent"), &old, &["v1.0"]).await.unwrap();
    push(&staging, &repo("agent"), &new, &["v1.1", "latest"]).await.unwrap();
    push(&staging, &repo("tools/cli"), &old, &["v2", "v1.1"]).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let manifest =
        format!("registries:\n- name: {host}/staging\n  src: true\n- name: {host}/prod\n", host = server.host());
    write(&root.join("manifests/foo/promoter-manifest.yaml"), &manifest);
    let images = root.join("images/foo/images.yaml");
    let original = format!(
        "# Images of project foo: add with `ferry manifest add`.\n\
         \n\
         # The agent.\n\
         - name: agent\n  dmap:\n    # first release\n    \"{old}\": [\"v1.0\"]\n",
        old = old.digest()
    );
    write(&images, &original);
    let dir_arg = root.display().to_string();
    let add = |image: &str, tags: &[&str]| {
        let mut args = vec!["manifest", "add", "--thin-manifest-dir", &dir_arg, "--project", "foo", "--image", image];
        for tag in tags {
            args.extend(["--tag", tag]);
        }
        ferry(&args)
    };

    // A tag to an existing digest, a new digest with two tags: in the file's own style.
    let out = add("agent", &["v1.0", "v1.1", "latest"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let expected = format!(
        "# Images of project foo: add with `ferry manifest add`.\n\
         \n\
         # The agent.\n\
         - name: agent\n  dmap:\n    # first release\n    \"{old}\": [\"v1.0\"]\n    \"{new}\": [\"v1.1\", \"latest\"]\n",
        old = old.digest(),
        new = new.digest()
    );
    assert_eq!(std::fs::read_to_string(&images).unwrap(), expected);
    assert!(text(&out.stdout).contains(&format!("agent@{} [v1.1, latest]: added", new.digest())));

    // Again: nothing changes, byte for byte.
    let out = add("agent", &["latest", "v1.1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("already there"), "{}", text(&out.stdout));
    assert_eq!(std::fs::read_to_string(&images).unwrap(), expected);

    // A new image: after the last entry (`tools/cli` sorts after `agent`).
    let out = add("tools/cli", &["v2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let with_cli = format!("{expected}- name: tools/cli\n  dmap:\n    \"{}\": [\"v2\"]\n", old.digest());
    assert_eq!(std::fs::read_to_string(&images).unwrap(), with_cli);

    // v1.1 of agent is bound to `new` on line 8; in staging it now names `old`: refused.
    push(&staging, &repo("agent"), &old, &["v1.1"]).await.unwrap();
    let out = add("agent", &["v1.1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:8: tag v1.1 is already bound to {}", images.display(), new.digest())),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&images).unwrap(), with_cli);

    // Unknown tag, project, image: bad input, nothing written.
    let out = add("agent", &["v9"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("agent:v9 does not exist"), "{}", text(&out.stderr));
    let out = ferry(&[
        "manifest",
        "add",
        "--thin-manifest-dir",
        &dir_arg,
        "--project",
        "bar",
        "--image",
        "agent",
        "--tag",
        "v1.0",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no project bar"), "{}", text(&out.stderr));
    let out = add("Bad Name", &["v1.0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&images).unwrap(), with_cli);
}
