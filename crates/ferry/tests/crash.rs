//! Crash tests: `ferry promote images` (into two prefixes of a real registry and an `oci:` layout),
//! `ferry promote files` and `ferry mirror` (into a local folder and a real S3 server) are killed
//! with SIGKILL at random moments, and after each kill every destination is read the way a client
//! reads it:
//!
//! - a registry through its HTTP API (tags/list, each tag's manifest, the children of an index,
//!   every config and layer blob, each hashed), an `oci:` layout through `index.json` and
//!   `blobs/sha256/`: every tag present points at exactly the digest the promotion manifest names
//!   and resolves to a complete graph whose every byte hashes right;
//! - a folder or bucket: every object under a name the run writes (a release file, a
//!   `sha256:<hex>` blob) holds exactly the bytes of its sha256 (nothing half-written under its
//!   final name), and every line of an inventory names an object that is there, intact.
//!
//! Then the same command is run to completion (everything must be there) and once more: that
//! last run must report that it wrote nothing, and the destinations must be byte-for-byte (and
//! modification time for modification time) as before it; the registries see no write request.
//!
//! Each scenario measures one uninterrupted run first and kills later runs after a random delay
//! within that duration (a run that ends before its kill is checked too, and does not count as a
//! kill). Kills come in rounds on fresh destinations: up to three kills one after the other on the
//! same destinations (a killed run resumed and killed again), then the run to completion and the
//! one that must write nothing. Seeded: `FERRY_CRASH_SEED` (printed) repeats
//! the kill moments, `FERRY_CRASH_KILLS` sets the kills per scenario (default 3, which keeps this
//! file fast enough for CI); `bench/crash.sh` runs many more. Each scenario ends with one line,
//! `crash summary: ...`, giving the kills, the states checked and the problems found.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use ferry_oci::{media_types, Digest};
use ferry_store::Store;
use ferry_testkit::fault_proxy::FaultProxy;
use ferry_testkit::files::files_under;
use ferry_testkit::images::{push, random_bytes, repo, ImageSpec, TestImage};
use ferry_testkit::registry_server::RegistryServer;
use ferry_testkit::s3_server::S3Server;
use serde_json::Value;

/// Kills one after the other on the same destinations before they are run to completion.
const KILLS_PER_ROUND: usize = 3;

// ---------------------------------------------------------------------------------------------
// Seeds, kills and runs.

/// splitmix64: small, deterministic, good enough to pick kill moments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// The seed (`FERRY_CRASH_SEED`, else the clock) and the kills per scenario (`FERRY_CRASH_KILLS`).
fn settings(scenario: &str) -> (u64, usize) {
    let seed = match std::env::var("FERRY_CRASH_SEED") {
        Ok(s) => s.trim().parse().expect("FERRY_CRASH_SEED must be an unsigned integer"),
        Err(_) => SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64,
    };
    let kills = match std::env::var("FERRY_CRASH_KILLS") {
        Ok(k) => k.trim().parse().expect("FERRY_CRASH_KILLS must be an unsigned integer"),
        Err(_) => 3,
    };
    eprintln!("crash: {scenario}: seed {seed} (FERRY_CRASH_SEED={seed} repeats it), {kills} kills");
    (seed, kills)
}

/// How a run of the binary ended.
struct Run {
    /// The exit code; `None` when killed.
    status: Option<i32>,
    stdout: String,
    stderr: String,
    /// Killed before it ended by itself.
    killed: bool,
    elapsed: Duration,
}

impl Run {
    fn describe(&self) -> String {
        format!("exit status {:?}\nstdout:\n{}\nstderr:\n{}", self.status, self.stdout, self.stderr)
    }
}

/// Runs `ferry args` with `env` added, in a process group of its own; with `kill_after`, sends
/// SIGKILL to the whole group once that long has passed, unless it ended first. Runs on a
/// blocking thread, so that proxies on the test's runtime keep serving.
async fn ferry(args: Vec<String>, env: Vec<(String, String)>, kill_after: Option<Duration>) -> Run {
    tokio::task::spawn_blocking(move || {
        let out = tempfile::tempdir().unwrap();
        let (stdout, stderr) = (out.path().join("stdout"), out.path().join("stderr"));
        let start = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(&args)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .process_group(0)
            .spawn()
            .expect("run ferry");
        let mut killed = false;
        if let Some(delay) = kill_after {
            while child.try_wait().unwrap().is_none() {
                let left = delay.saturating_sub(start.elapsed());
                if left.is_zero() {
                    // The whole group: the process and any child it started.
                    let group = format!("-{}", child.id());
                    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
                    let _ = child.kill();
                    killed = true;
                    break;
                }
                std::thread::sleep(left.min(Duration::from_millis(2)));
            }
        }
        let status = child.wait().unwrap();
        let elapsed = start.elapsed();
        // A kill that raced the process's own exit did not interrupt it.
        let killed = killed && status.code().is_none();
        let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
        Run { status: status.code(), stdout: read(&stdout), stderr: read(&stderr), killed, elapsed }
    })
    .await
    .unwrap()
}

/// What a check of one state found.
#[derive(Default)]
struct Check {
    /// What a client would see wrong.
    problems: Vec<String>,
    /// Temporary files a killed run left under names no client reads (`.ferry-tmp-*` in a layout,
    /// `NAME#N` staging files in a folder): untidy, not wrong.
    leftovers: usize,
}

/// What the checks of one scenario found, over all its states.
#[derive(Default)]
struct Found {
    states: usize,
    /// Temporary files seen, summed over the states checked.
    leftovers: usize,
    /// Temporary files still there after the runs to completion, summed over the rounds.
    left_after: usize,
    problems: Vec<String>,
}

impl Found {
    fn record(&mut self, what: &str, check: Check) {
        self.states += 1;
        self.leftovers += check.leftovers;
        self.problems.extend(check.problems.into_iter().map(|p| format!("{what}: {p}")));
    }
}

/// One command whose destinations are checked between kills.
trait Scenario {
    /// For messages and the summary line.
    fn name(&self) -> &'static str;
    /// The command line (`--confirm --output json`) and environment of a run that writes to
    /// round `round`'s destinations, each round's being fresh.
    fn command(&self, round: usize) -> (Vec<String>, Vec<(String, String)>);
    /// Reads round `round`'s destinations as a client; with `complete`, everything must be there.
    async fn check(&self, round: usize, complete: bool) -> Check;
    /// What the destinations hold: every object with its bytes' hash (and, for files, when it
    /// was last written), to compare around the run that must write nothing.
    async fn listing(&self, round: usize) -> Vec<String>;
    /// Called just before the run that must write nothing.
    fn before_last_run(&self) {}
    /// Problems with the last run: its JSON report must say it wrote nothing.
    fn nothing_written(&self, report: &Value) -> Vec<String>;
}

/// Kills `scenario` `FERRY_CRASH_KILLS` times (see the module docs), checks every state, prints
/// the summary line and fails with every problem found.
async fn crash_test(scenario: &impl Scenario, stream: u64) {
    let name = scenario.name();
    let (seed, kills) = settings(name);
    let mut rng = Rng(seed ^ stream.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    let mut found = Found::default();
    // Round 0: one uninterrupted run, to learn how long a run takes.
    let (args, env) = scenario.command(0);
    let run = ferry(args, env, None).await;
    assert_eq!(run.status, Some(0), "{name}: the uninterrupted run failed: {}", run.describe());
    let full = run.elapsed;
    eprintln!("crash: {name}: an uninterrupted run takes {full:.2?}");
    found.record("the uninterrupted run", scenario.check(0, true).await);

    // A kill that comes after the run has ended is no kill: try again, up to a bound.
    let (mut round, mut tries, mut landed) = (0, 0, 0);
    while landed < kills && tries < 3 * kills + 3 {
        round += 1;
        // A run that ended by itself, succeeding, is this round's run to completion.
        let mut completed = false;
        for _ in 0..KILLS_PER_ROUND.min(kills - landed) {
            let delay = Duration::from_micros(rng.below(full.as_micros() as u64));
            let (args, env) = scenario.command(round);
            let run = ferry(args, env, Some(delay)).await;
            tries += 1;
            let what = format!("round {round}, kill {tries} after {delay:.2?}");
            if run.killed {
                landed += 1;
            } else if run.status != Some(0) {
                found.problems.push(format!("{what}: the run ended by itself, failing: {}", run.describe()));
            }
            completed = !run.killed && run.status == Some(0);
            if completed {
                break; // checked below, as the run to completion
            }
            found.record(&what, scenario.check(round, false).await);
            if !run.killed {
                break;
            }
        }
        // Converge: the run to completion, then one that must write nothing.
        let (args, env) = scenario.command(round);
        let what = format!("round {round}, the run to completion");
        if !completed {
            let run = ferry(args.clone(), env.clone(), None).await;
            if run.status != Some(0) {
                found.problems.push(format!("{what}: {}", run.describe()));
            }
        }
        let check = scenario.check(round, true).await;
        found.left_after += check.leftovers;
        found.record(&what, check);
        let before = scenario.listing(round).await;
        scenario.before_last_run();
        let run = ferry(args, env, None).await;
        let what = format!("round {round}, the run after it");
        match serde_json::from_str::<Value>(&run.stdout) {
            Ok(report) if run.status == Some(0) => {
                found.problems.extend(scenario.nothing_written(&report).into_iter().map(|p| format!("{what}: {p}")))
            }
            _ => found.problems.push(format!("{what}: {}", run.describe())),
        }
        let after = scenario.listing(round).await;
        if before != after {
            let changed: Vec<&String> = after.iter().filter(|l| !before.contains(l)).collect();
            let gone: Vec<&String> = before.iter().filter(|l| !after.contains(l)).collect();
            found.problems.push(format!("{what}: the destinations changed: now {changed:#?}, before {gone:#?}"));
        }
        found.states += 1;
    }
    eprintln!(
        "crash summary: {name}: seed {seed}, kills {landed} (of {tries} tries; {} runs ended before their kill), \
         rounds {round}, states checked {}, problems {}; temporary files of killed runs: {} seen over the states, \
         {} still there after the runs to completion",
        tries - landed,
        found.states,
        found.problems.len(),
        found.leftovers,
        found.left_after
    );
    assert!(found.problems.is_empty(), "{name} (FERRY_CRASH_SEED={seed}):\n{}", found.problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Reading destinations as a client.

fn hex(bytes: &[u8]) -> String {
    Digest::of(bytes).hex().to_string()
}

/// Where manifests and blobs are read from: a registry's HTTP API or an `oci:` layout.
enum Source<'a> {
    Remote { client: &'a reqwest::Client, host: &'a str, repo: String },
    Layout(PathBuf),
}

impl Source<'_> {
    /// A manifest by tag or digest, or a blob by digest; `None` when absent.
    async fn get(&self, kind: &str, reference: &str) -> Result<Option<Vec<u8>>, String> {
        match self {
            Source::Remote { client, host, repo } => {
                let url = format!("http://{host}/v2/{repo}/{kind}/{reference}");
                let resp = client
                    .get(&url)
                    .header("accept", media_types::ACCEPT_ALL)
                    .send()
                    .await
                    .map_err(|e| format!("GET {url}: {e}"))?;
                match resp.status().as_u16() {
                    404 => Ok(None),
                    200 => Ok(Some(resp.bytes().await.map_err(|e| format!("GET {url}: {e}"))?.to_vec())),
                    s => Err(format!("GET {url}: {s}: {}", resp.text().await.unwrap_or_default())),
                }
            }
            Source::Layout(dir) => {
                let digest: Digest = reference.parse().map_err(|e| format!("{reference}: {e}"))?;
                match std::fs::read(dir.join("blobs/sha256").join(digest.hex())) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(format!("{}: {e}", dir.display())),
                }
            }
        }
    }

    /// The manifest of a tag the registry lists. The registry may still be carrying out a push
    /// the killed run had sent in full: distribution links a tag into the tag's index (which
    /// `tags/list` shows) a moment before it records what the tag points at. So a listed tag
    /// without a manifest is asked again for up to two seconds before it counts as dangling.
    async fn tagged(&self, tag: &str) -> Result<Option<Vec<u8>>, String> {
        for _ in 0..20 {
            if let Some(bytes) = self.get("manifests", tag).await? {
                return Ok(Some(bytes));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(None)
    }

    /// Checks that `top` is there with every manifest and blob under it, each hashing to its
    /// digest (blobs also of their declared size). `verified` skips what was checked already.
    async fn complete_graph(&self, top: &Digest, verified: &mut HashSet<Digest>) -> Result<(), String> {
        let mut pending = vec![top.clone()];
        while let Some(digest) = pending.pop() {
            if verified.contains(&digest) {
                continue;
            }
            let bytes = self.get("manifests", digest.as_str()).await?.ok_or(format!("manifest {digest} is missing"))?;
            if Digest::of(&bytes) != digest {
                return Err(format!("manifest {digest} holds other bytes ({})", Digest::of(&bytes)));
            }
            let doc: Value = serde_json::from_slice(&bytes).map_err(|e| format!("manifest {digest}: {e}"))?;
            for child in doc["manifests"].as_array().into_iter().flatten() {
                pending.push(child["digest"].as_str().unwrap_or_default().parse().map_err(|e| format!("{e}"))?);
            }
            let blobs = doc["layers"].as_array().into_iter().flatten().chain(doc.get("config"));
            for blob in blobs.collect::<Vec<_>>() {
                let d: Digest = blob["digest"].as_str().unwrap_or_default().parse().map_err(|e| format!("{e}"))?;
                if verified.contains(&d) {
                    continue;
                }
                let bytes = self.get("blobs", d.as_str()).await?.ok_or(format!("blob {d} of {digest} is missing"))?;
                if Digest::of(&bytes) != d || Some(bytes.len() as u64) != blob["size"].as_u64() {
                    return Err(format!("blob {d} of {digest} holds other bytes ({} bytes)", bytes.len()));
                }
                verified.insert(d);
            }
            verified.insert(digest);
        }
        Ok(())
    }
}

/// Problems with the objects of a folder or bucket: each `(name, bytes)` must be `allowed`'s
/// (and hash to its sha256 hex) or an inventory whose every line `line_target` maps to an object
/// that is there and right. Returns the problems and the names of the objects found intact.
fn check_objects(
    objects: &BTreeMap<String, Vec<u8>>,
    allowed: &BTreeMap<String, String>,
    inventory: &str,
    line_target: impl Fn(&str) -> Option<String>,
    what: &str,
) -> (Vec<String>, HashSet<String>) {
    let mut problems = Vec::new();
    let mut intact = HashSet::new();
    for (name, bytes) in objects {
        if name == inventory {
            continue;
        }
        match allowed.get(name) {
            Some(sha) if *sha == hex(bytes) => {
                intact.insert(name.clone());
            }
            Some(sha) => problems.push(format!(
                "{what}: {name} holds other bytes ({} bytes hashing to {}, not {sha})",
                bytes.len(),
                hex(bytes)
            )),
            None => problems.push(format!("{what}: {name}: an object no run should write")),
        }
    }
    if let Some(text) = objects.get(inventory) {
        // `NAME [SIZE]`, one a line.
        for line in String::from_utf8_lossy(text).lines().map(str::trim).filter(|l| !l.is_empty()) {
            let mut fields = line.split_whitespace();
            let (entry, size) = (fields.next().unwrap_or_default(), fields.next());
            match line_target(entry) {
                Some(name)
                    if size.is_some_and(|s| Some(s) != objects.get(&name).map(|b| b.len().to_string()).as_deref()) =>
                {
                    problems.push(format!("{what}: the inventory gives {line} another size than its object's"))
                }
                Some(name) if intact.contains(&name) => {}
                Some(name) if objects.contains_key(&name) => {
                    problems.push(format!("{what}: the inventory lists {line}, whose object is wrong"))
                }
                _ => problems.push(format!("{what}: the inventory lists {line}, which is not there")),
            }
        }
    }
    (problems, intact)
}

/// Every file under `dir` (relative name → bytes), but the staging files of writes a kill cut
/// short (`NAME#N`, never read under a release name), which are counted.
fn folder_objects(dir: &Path) -> (BTreeMap<String, Vec<u8>>, usize) {
    let mut objects = BTreeMap::new();
    let mut staging = 0;
    for path in files_under(dir) {
        let name = path.strip_prefix(dir).unwrap().to_string_lossy().replace('\\', "/");
        if name.rsplit_once('#').is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
            staging += 1;
            continue;
        }
        objects.insert(name, std::fs::read(&path).unwrap());
    }
    (objects, staging)
}

/// Every object of an S3 store, read through the S3 API.
async fn bucket_objects(store: &Store) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let mut objects = BTreeMap::new();
    for (name, _) in store.list("").await.map_err(|e| e.to_string())? {
        if let Some(bytes) = store.read_small(&name, 1 << 30).await.map_err(|e| e.to_string())? {
            objects.insert(name.as_str().to_string(), bytes.to_vec());
        }
    }
    Ok(objects)
}

/// Every file under `dir` with its size, hash and modification time.
fn folder_listing(dir: &Path) -> Vec<String> {
    files_under(dir)
        .into_iter()
        .map(|path| {
            let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
            let nanos = modified.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos();
            let bytes = std::fs::read(&path).unwrap();
            format!("{} {} {} {nanos}", path.display(), bytes.len(), hex(&bytes))
        })
        .collect()
}

/// A round's folder and bucket destinations, each's objects checked by `check_objects` (given
/// the objects and where they are); the folder's staging leftovers counted.
async fn check_folder_and_bucket(
    folder: &Path,
    s3: &S3Server,
    url: &str,
    check_objects: impl Fn(&BTreeMap<String, Vec<u8>>, &str) -> Vec<String>,
) -> Check {
    let (objects, leftovers) = folder_objects(folder);
    let mut problems = check_objects(&objects, &folder.display().to_string());
    match bucket_objects(&s3_store(s3, url)).await {
        Ok(objects) => problems.extend(check_objects(&objects, url)),
        Err(e) => problems.push(format!("{url}: {e}")),
    }
    Check { problems, leftovers }
}

fn s3_store(s3: &S3Server, url: &str) -> Store {
    Store::open_with(url, &s3.env()).unwrap()
}

fn json_u64(report: &Value, path: &[&str]) -> u64 {
    path.iter().fold(report, |v, k| &v[k]).as_u64().unwrap_or(u64::MAX)
}

/// `summary.<field>` must be 0 for each of `fields`.
fn zero_fields(report: &Value, fields: &[&str]) -> Vec<String> {
    fields
        .iter()
        .filter(|f| json_u64(report, &["summary", f]) != 0)
        .map(|f| format!("summary.{f} is {}, not 0", report["summary"][f]))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The source images.

/// Four two-architecture images sharing a base layer, `app-N`, each tagged `v1` and `v1.0`:
/// `layer` bytes per layer, 20 layers of 10 distinct blobs in all.
fn test_images(layer: usize) -> Vec<(String, TestImage)> {
    (0..4).map(|i| (format!("app-{i}"), ImageSpec::two_arch(&format!("crash-{i}"), layer, layer).build())).collect()
}

const TAGS: [&str; 2] = ["v1", "v1.0"];

/// Pushes `images` to `host/staging/NAME`.
async fn stage(host: &str, images: &[(String, TestImage)]) {
    let client = ferry_registry::remote::RemoteClient::new(Default::default()).unwrap();
    let staging = client.registry(host, Some(repo("staging")));
    for (name, image) in images {
        push(&staging, &repo(name), image, &TAGS).await.unwrap();
    }
}

/// A plain promotion manifest: `source` → `destinations`, every image with [`TAGS`].
fn manifest_yaml(source: &str, destinations: &[String], images: &[(String, TestImage)]) -> String {
    let mut yaml = format!("registries:\n- name: {source}\n  src: true\n");
    for d in destinations {
        yaml += &format!("- name: {d}\n");
    }
    yaml += "images:\n";
    for (name, image) in images {
        yaml += &format!("- name: {name}\n  dmap:\n    \"{}\": [\"v1\", \"v1.0\"]\n", image.digest());
    }
    yaml
}

// ---------------------------------------------------------------------------------------------
// ferry promote images: two prefixes of one registry (uploads and mounts) and an `oci:` layout.

struct PromoteImages {
    source: RegistryServer,
    destination: RegistryServer,
    /// Every run of the binary talks to `destination` through it, so that the write requests of
    /// the last run can be counted; the checks read `destination` directly.
    proxy: FaultProxy,
    images: Vec<(String, TestImage)>,
    dir: tempfile::TempDir,
    client: reqwest::Client,
}

impl PromoteImages {
    fn prefixes(round: usize) -> [String; 2] {
        [format!("prod{round}"), format!("backup{round}")]
    }

    fn layout(&self, round: usize) -> PathBuf {
        self.dir.path().join(format!("oci{round}"))
    }
}

impl Scenario for PromoteImages {
    fn name(&self) -> &'static str {
        "promote images"
    }

    fn command(&self, round: usize) -> (Vec<String>, Vec<(String, String)>) {
        let mut destinations: Vec<String> =
            Self::prefixes(round).iter().map(|p| format!("{}/{p}", self.proxy.host())).collect();
        destinations.push(format!("oci:{}", self.layout(round).display()));
        let source = format!("{}/staging", self.source.host());
        let path = self.dir.path().join(format!("manifest{round}.yaml"));
        std::fs::write(&path, manifest_yaml(&source, &destinations, &self.images)).unwrap();
        let args = ["promote", "images", "--manifest", path.to_str().unwrap(), "--confirm", "--output", "json"];
        (args.map(String::from).to_vec(), Vec::new())
    }

    async fn check(&self, round: usize, complete: bool) -> Check {
        let mut check = Check::default();
        let host = self.destination.host();
        for prefix in Self::prefixes(round) {
            for (name, image) in &self.images {
                let repo = format!("{prefix}/{name}");
                let source = Source::Remote { client: &self.client, host: &host, repo: repo.clone() };
                let url = format!("http://{host}/v2/{repo}/tags/list");
                let resp = self.client.get(&url).send().await.unwrap();
                let tags: Vec<String> = match resp.status().as_u16() {
                    404 => Vec::new(),
                    200 => {
                        let list: Value = resp.json().await.unwrap();
                        list["tags"].as_array().into_iter().flatten().map(|t| t.as_str().unwrap().to_string()).collect()
                    }
                    s => {
                        check.problems.push(format!("GET {url}: {s}"));
                        continue;
                    }
                };
                let mut verified = HashSet::new();
                for tag in &tags {
                    let at = format!("{host}/{repo}:{tag}");
                    if !TAGS.contains(&tag.as_str()) {
                        check.problems.push(format!("{at}: a tag no manifest names"));
                        continue;
                    }
                    match source.tagged(tag).await {
                        Ok(Some(bytes)) if Digest::of(&bytes) == *image.digest() => {}
                        Ok(Some(bytes)) => {
                            check.problems.push(format!("{at} is {}, not {}", Digest::of(&bytes), image.digest()));
                            continue;
                        }
                        Ok(None) => {
                            check.problems.push(format!("{at} is listed but has no manifest"));
                            continue;
                        }
                        Err(e) => {
                            check.problems.push(format!("{at}: {e}"));
                            continue;
                        }
                    }
                    if let Err(e) = source.complete_graph(image.digest(), &mut verified).await {
                        check.problems.push(format!("{at}: {e}"));
                    }
                }
                if complete && tags.len() != TAGS.len() {
                    check.problems.push(format!("{host}/{repo}: tags {tags:?} after a run to completion"));
                }
            }
        }
        // The layout: `index.json` whole, each tag the manifest's digest with its whole graph,
        // every untagged root complete too, and every blob file intact.
        for (name, image) in &self.images {
            let dir = self.layout(round).join(name);
            let what = format!("oci:{}", dir.display());
            for file in files_under(&dir) {
                let file_name = file.file_name().unwrap().to_string_lossy().into_owned();
                if file_name.starts_with(".ferry-tmp-") {
                    check.leftovers += 1;
                } else if file.parent() == Some(&dir.join("blobs/sha256")) {
                    let bytes = std::fs::read(&file).unwrap();
                    if hex(&bytes) != file_name {
                        check.problems.push(format!("{what}: blob file {file_name} holds other bytes"));
                    }
                } else if !["index.json", "oci-layout"].contains(&file_name.as_str()) {
                    check.problems.push(format!("{what}: unexpected file {}", file.display()));
                }
            }
            let index = match std::fs::read(dir.join("index.json")) {
                Ok(bytes) => bytes,
                Err(_) => {
                    if complete {
                        check.problems.push(format!("{what}: no index.json after a run to completion"));
                    }
                    continue;
                }
            };
            let index: Value = match serde_json::from_slice(&index) {
                Ok(index) => index,
                Err(e) => {
                    check.problems.push(format!("{what}: index.json is not whole: {e}"));
                    continue;
                }
            };
            let source = Source::Layout(dir.clone());
            let mut verified = HashSet::new();
            let mut tags = Vec::new();
            for entry in index["manifests"].as_array().into_iter().flatten() {
                let digest: Digest = entry["digest"].as_str().unwrap_or_default().parse().unwrap();
                let tag = entry["annotations"]["org.opencontainers.image.ref.name"].as_str();
                if let Some(tag) = tag {
                    tags.push(tag.to_string());
                    if !TAGS.contains(&tag) || digest != *image.digest() {
                        check.problems.push(format!("{what}:{tag} is {digest}, not {}", image.digest()));
                        continue;
                    }
                }
                if let Err(e) = source.complete_graph(&digest, &mut verified).await {
                    check.problems.push(format!("{what}: entry {digest} (tag {tag:?}): {e}"));
                }
            }
            tags.sort();
            if complete && tags != ["v1", "v1.0"] {
                check.problems.push(format!("{what}: tags {tags:?} after a run to completion"));
            }
        }
        check
    }

    async fn listing(&self, round: usize) -> Vec<String> {
        let host = self.destination.host();
        let mut listing = folder_listing(&self.layout(round));
        for prefix in Self::prefixes(round) {
            for (name, _) in &self.images {
                let repo = format!("{prefix}/{name}");
                let source = Source::Remote { client: &self.client, host: &host, repo: repo.clone() };
                for tag in TAGS {
                    let found = source.get("manifests", tag).await.unwrap().map(|b| Digest::of(&b));
                    listing.push(format!("{repo}:{tag} {found:?}"));
                }
            }
        }
        listing
    }

    fn before_last_run(&self) {
        self.proxy.reset_counts();
    }

    fn nothing_written(&self, report: &Value) -> Vec<String> {
        let mut problems = zero_fields(
            report,
            &["promoted", "failed", "bytes_written", "blobs_uploaded", "blobs_mounted", "manifests_pushed"],
        );
        let writes: Vec<_> = self.proxy.requests().into_iter().filter(|(m, _)| m != "GET" && m != "HEAD").collect();
        if !writes.is_empty() {
            problems.push(format!("write requests reached the registry: {writes:?}"));
        }
        problems
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_images_killed_at_random_moments_publishes_nothing_partial_and_converges() {
    let source = RegistryServer::start().await.unwrap();
    let destination = RegistryServer::start().await.unwrap();
    let proxy = FaultProxy::start(&destination.host()).await.unwrap();
    let images = test_images(1 << 20);
    stage(&source.host(), &images).await;
    let scenario = PromoteImages {
        source,
        destination,
        proxy,
        images,
        dir: tempfile::tempdir().unwrap(),
        client: reqwest::Client::new(),
    };
    crash_test(&scenario, 1).await;
}

// ---------------------------------------------------------------------------------------------
// ferry promote files: a staging folder into a local folder and S3 (one file in several parts),
// with inventories.

struct PromoteFiles {
    s3: S3Server,
    dir: tempfile::TempDir,
    /// Release file name → sha256 hex.
    files: BTreeMap<String, String>,
}

impl PromoteFiles {
    fn folder(&self, round: usize) -> PathBuf {
        self.dir.path().join(format!("prod{round}"))
    }

    fn bucket_url(round: usize) -> String {
        format!("s3://prod/r{round}/")
    }

    fn check_objects(&self, objects: &BTreeMap<String, Vec<u8>>, complete: bool, what: &str) -> Vec<String> {
        let target = |line: &str| line.strip_prefix('/').map(str::to_string);
        let (mut problems, intact) = check_objects(objects, &self.files, "inventory.txt", target, what);
        if complete {
            let missing: Vec<_> = self.files.keys().filter(|f| !intact.contains(*f)).collect();
            if !missing.is_empty() {
                problems.push(format!("{what}: {missing:?} missing after a run to completion"));
            }
            let listed = objects.get("inventory.txt").map(|t| String::from_utf8_lossy(t).lines().count());
            if listed != Some(self.files.len()) {
                problems.push(format!("{what}: the inventory lists {listed:?} files after a run to completion"));
            }
        }
        problems
    }
}

impl Scenario for PromoteFiles {
    fn name(&self) -> &'static str {
        "promote files"
    }

    fn command(&self, round: usize) -> (Vec<String>, Vec<(String, String)>) {
        let manifests = self.dir.path().join(format!("m{round}"));
        let stores = format!(
            "filestores:\n- base: {}\n  src: true\n- base: {}\n- base: {}\n",
            self.dir.path().join("staging").display(),
            self.folder(round).display(),
            Self::bucket_url(round)
        );
        let files: String = self.files.iter().map(|(name, sha)| format!("- name: {name}\n  sha256: {sha}\n")).collect();
        for (path, text) in [
            ("filestores/proj/filepromoter-manifest.yaml", stores),
            ("manifests/proj/release.yaml", format!("files:\n{files}")),
        ] {
            std::fs::create_dir_all(manifests.join(path).parent().unwrap()).unwrap();
            std::fs::write(manifests.join(path), text).unwrap();
        }
        let manifests = manifests.display().to_string();
        let args = ["promote", "files", "--manifests", &manifests, "--confirm", "--inventory", "--output", "json"];
        (args.map(String::from).to_vec(), self.s3.env())
    }

    async fn check(&self, round: usize, complete: bool) -> Check {
        let check = |objects: &BTreeMap<String, Vec<u8>>, what: &str| self.check_objects(objects, complete, what);
        check_folder_and_bucket(&self.folder(round), &self.s3, &Self::bucket_url(round), check).await
    }

    async fn listing(&self, round: usize) -> Vec<String> {
        let mut listing = folder_listing(&self.folder(round));
        listing.extend(folder_listing(&self.s3.bucket_dir("prod").join(format!("r{round}"))));
        listing
    }

    fn nothing_written(&self, report: &Value) -> Vec<String> {
        let mut problems = zero_fields(report, &["promoted", "failed", "bytes_written", "files_read"]);
        for inventory in report["inventories"].as_array().into_iter().flatten() {
            if inventory["status"] != "unchanged" {
                problems.push(format!("inventory {} is {}", inventory["destination"], inventory["status"]));
            }
        }
        problems
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_files_killed_at_random_moments_publishes_nothing_partial_and_converges() {
    let s3 = S3Server::start().await.unwrap();
    s3.create_bucket("prod").unwrap();
    let dir = tempfile::tempdir().unwrap();
    // 12 MiB goes to S3 in two parts (8 MiB each but the last); the others in one PUT.
    let sizes = [
        ("1.0.0/linux/amd64/tool", 12 << 20),
        ("1.0.0/linux/arm64/tool", 5 << 20),
        ("1.0.0/darwin/arm64/tool", 3 << 20),
        ("1.0.0/tool.tar.gz", 2 << 20),
        ("1.0.0/README", 1000),
    ];
    let mut files = BTreeMap::new();
    for (i, (name, size)) in sizes.into_iter().enumerate() {
        let bytes = random_bytes(1000 + i as u64, size);
        let path = dir.path().join("staging").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        let sha = hex(&bytes);
        let sums = format!("{name}.sha256");
        std::fs::write(dir.path().join("staging").join(&sums), format!("{sha}\n")).unwrap();
        files.insert(sums, hex(format!("{sha}\n").as_bytes()));
        files.insert(name.to_string(), sha);
    }
    crash_test(&PromoteFiles { s3, dir, files }, 2).await;
}

// ---------------------------------------------------------------------------------------------
// ferry mirror: a registry's blobs into a local folder and S3, with inventories.

struct Mirror {
    source: RegistryServer,
    s3: S3Server,
    dir: tempfile::TempDir,
    images: Vec<(String, TestImage)>,
    /// Every config and layer blob name (`sha256:<hex>`) → its hex.
    blobs: BTreeMap<String, String>,
}

impl Mirror {
    fn folder(&self, round: usize) -> PathBuf {
        self.dir.path().join(format!("mirror{round}"))
    }

    fn bucket_url(round: usize) -> String {
        format!("s3://mirror/r{round}/")
    }

    fn check_objects(&self, objects: &BTreeMap<String, Vec<u8>>, complete: bool, what: &str) -> Vec<String> {
        let target = |line: &str| line.starts_with("sha256:").then(|| line.to_string());
        let (mut problems, intact) = check_objects(objects, &self.blobs, "inventory.txt", target, what);
        if complete {
            let missing: Vec<_> = self.blobs.keys().filter(|b| !intact.contains(*b)).collect();
            if !missing.is_empty() {
                problems.push(format!("{what}: {missing:?} missing after a run to completion"));
            }
            let listed = objects.get("inventory.txt").map(|t| String::from_utf8_lossy(t).lines().count());
            if listed != Some(self.blobs.len()) {
                problems.push(format!("{what}: the inventory lists {listed:?} blobs after a run to completion"));
            }
        }
        problems
    }
}

impl Scenario for Mirror {
    fn name(&self) -> &'static str {
        "mirror"
    }

    fn command(&self, round: usize) -> (Vec<String>, Vec<(String, String)>) {
        let source = format!("{}/staging", self.source.host());
        let unused = format!("oci:{}", self.dir.path().join("unused").display());
        let path = self.dir.path().join("manifest.yaml");
        std::fs::write(&path, manifest_yaml(&source, &[unused], &self.images)).unwrap();
        let folder = self.folder(round);
        let args = [
            "mirror",
            "--manifest",
            path.to_str().unwrap(),
            "--from",
            &source,
            "--to",
            folder.to_str().unwrap(),
            "--to",
            &Self::bucket_url(round),
            "--confirm",
            "--output",
            "json",
        ];
        (args.map(String::from).to_vec(), self.s3.env())
    }

    async fn check(&self, round: usize, complete: bool) -> Check {
        let check = |objects: &BTreeMap<String, Vec<u8>>, what: &str| self.check_objects(objects, complete, what);
        check_folder_and_bucket(&self.folder(round), &self.s3, &Self::bucket_url(round), check).await
    }

    async fn listing(&self, round: usize) -> Vec<String> {
        let mut listing = folder_listing(&self.folder(round));
        listing.extend(folder_listing(&self.s3.bucket_dir("mirror").join(format!("r{round}"))));
        listing
    }

    fn nothing_written(&self, report: &Value) -> Vec<String> {
        let mut problems = zero_fields(report, &["copies_done", "copies_failed", "bytes_written", "images_failed"]);
        for store in report["stores"].as_array().into_iter().flatten() {
            if store["inventory_written"] != false {
                problems.push(format!("the inventory of {} was written", store["store"]));
            }
        }
        problems
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_killed_at_random_moments_publishes_nothing_partial_and_converges() {
    let source = RegistryServer::start().await.unwrap();
    let s3 = S3Server::start().await.unwrap();
    s3.create_bucket("mirror").unwrap();
    let images = test_images(1 << 20);
    stage(&source.host(), &images).await;
    let blobs = images
        .iter()
        .flat_map(|(_, image)| image.blobs.iter().map(|b| (b.digest.to_string(), b.digest.hex().to_string())))
        .collect();
    let scenario = Mirror { source, s3, dir: tempfile::tempdir().unwrap(), images, blobs };
    crash_test(&scenario, 3).await;
}
