//! Writes a synthetic `ferry serve` setup for `bench/report.sh`: `DIR/ferry.yaml` (5 mirrors),
//! their sized inventories (2,000 blobs), and `DIR/access.jsonl.gz`, LINES access-log lines over
//! 30 days from 50 locations.
//!
//! `cargo run --release -p ferry-usage --example access_log -- DIR LINES`

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (dir, lines) = match &args[..] {
        [_, dir, lines] => (std::path::PathBuf::from(dir), lines.parse::<u64>().expect("LINES is a number")),
        _ => panic!("usage: access_log DIR LINES"),
    };
    std::fs::create_dir_all(&dir).unwrap();
    let digest =
        |n: u64| format!("sha256:{}", format!("{:016x}", (n + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)).repeat(4));
    let size = |n: u64| 1_000 + (n * 7919 % 2_000) * 50_000;
    let providers = ["aws", "gcp", "azure", "country"];
    let labels: Vec<String> = (0..50).map(|i| format!("{}:region-{i}", providers[i % 4])).collect();
    let mirrors = ["m-aws-0", "m-gcp-1", "m-azure-2", "m-aws-4", "m-gcp-5"];
    let mut config = String::from("upstream: {registry: https://registry.example}\nmirrors:\n");
    for (i, m) in mirrors.iter().enumerate() {
        // Mirror i serves the locations i, i+5, ... among the first 25 (the rest have none), and
        // holds every blob but one in ten.
        let serves: Vec<&str> = labels.iter().skip(i).step_by(5).take(5).map(String::as_str).collect();
        config += &format!(
            "  - {{name: {m}, blobs: 'https://{m}.example/{{digest}}', serves: {serves:?}, inventory: {m}.txt}}\n"
        );
        let inventory: String = (0..2000)
            .filter(|n| !(n + i as u64).is_multiple_of(10))
            .map(|n| format!("{} {}\n", digest(n), size(n)))
            .collect();
        std::fs::write(dir.join(format!("{m}.txt")), inventory).unwrap();
    }
    std::fs::write(dir.join("ferry.yaml"), config).unwrap();
    let file = std::fs::File::create(dir.join("access.jsonl.gz")).unwrap();
    let mut out = std::io::BufWriter::with_capacity(
        1 << 20,
        flate2::write::GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::fast()),
    );
    let start = 1_793_491_200u64; // 2026-11-01T00:00:00Z
    let mut seed = 42u64;
    let mut line = String::with_capacity(512);
    for k in 0..lines {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let r = seed >> 16;
        let at = start + k * (30 * 86_400) / lines.max(1);
        let l = (r % 50) as usize;
        let n = (r >> 8) % 2000;
        let m = l % 5;
        let served = l < 25 && !(n + m as u64).is_multiple_of(10);
        let (outcome, mirror) = if served { ("mirror", mirrors[m]) } else { ("upstream", "") };
        let (day, s) = (at / 86_400 - 20_758, at % 86_400); // days since 2026-11-01
        let d = digest(n);
        line.clear();
        use std::fmt::Write as _;
        let _ = writeln!(
            line,
            "{{\"timestamp\":\"2026-11-{:02}T{:02}:{:02}:{:02}.{:06}Z\",\"level\":\"INFO\",\"target\":\"ferry_serve::access\",\"fields\":{{\"method\":\"GET\",\"path\":\"/v2/project/app-{}/blobs/{d}\",\"client\":\"192.0.2.{}\",\"peer\":\"10.0.0.7\",\"label\":\"{}\",\"status\":307,\"outcome\":\"{outcome}\",\"mirror\":\"{mirror}\",\"location\":\"https://{}.example/{d}\",\"reason\":\"exact match {} for label {}, in inventory\"}}}}",
            day + 1,
            s / 3600,
            s % 3600 / 60,
            s % 60,
            r % 1_000_000,
            n % 40,
            r % 250,
            labels[l],
            if served { mirror } else { "registry" },
            labels[l],
            labels[l],
        );
        out.write_all(line.as_bytes()).unwrap();
    }
    out.into_inner().unwrap().finish().unwrap().flush().unwrap();
}
