//! The engine on a log whose numbers are computed by hand (in the comments): every total of the
//! JSON report, costs through a price table with tiers, an object a mirror lacked listed under
//! that mirror, a mirror that was down, a location without a mirror of its own.

use ferry_usage::{render, Mirrors, Options, Prices, Usage};

const GIB: u64 = 1 << 30;

fn d(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn line(ts: &str, method: &str, path: &str, label: &str, status: u16, outcome: &str, mirror: &str) -> String {
    format!(
        r#"{{"timestamp":"{ts}","level":"INFO","target":"ferry_serve::access","fields":{{"method":"{method}","path":"{path}","client":"192.0.2.1","peer":"127.0.0.1","label":"{label}","status":{status},"outcome":"{outcome}","mirror":"{mirror}","location":"https://x/","reason":"r"}}}}"#
    )
}

fn mirrors() -> Mirrors {
    let config = "upstream: {registry: https://r.example}\nmirrors:\n\
        - {name: east, blobs: 'https://e/{digest}', serves: ['aws:us-east-2'], inventory: east.txt}\n\
        - {name: west, blobs: 'https://w/{digest}', files: 'https://w/{path}', serves: ['gcp:*'], inventory: west.txt}\n";
    Mirrors::from_config(config, "ferry.yaml", |source| {
        Ok(match source {
            // D1 1 GiB, D2 2 GiB (east); D3 3 GiB, /rel/tool 1 GiB (west). D4 has no size anywhere.
            "east.txt" => format!("{} {}\n{} {}\n", d('1'), GIB, d('2'), 2 * GIB),
            "west.txt" => format!("{}\n{} {}\n/rel/tool {}\n", d('1'), d('3'), 3 * GIB, GIB),
            other => panic!("{other}"),
        })
    })
    .unwrap()
}

/// aws: first GiB $0.10, then $0.05; gcp: first 2 GiB $0.20, then $0.10, $0.01 a request,
/// $0.01/GiB between regions.
const PRICES: &str = concat!(
    "source: test\ndate: '2026-12-04'\nupstream: gcp:us-central1\n",
    "origins: {east: 'aws:us-east-2', west: 'gcp:europe-west1'}\nproviders:\n",
    "  aws: {internet: [{up_to_gb: 1, usd_per_gb: 0.10}, {usd_per_gb: 0.05}], inter_region_per_gb: 0.02}\n",
    "  gcp: {internet: [{up_to_gb: 2, usd_per_gb: 0.20}, {usd_per_gb: 0.10}], inter_region_per_gb: 0.01, requests_per_10k: 100}\n",
);

fn log() -> Vec<String> {
    let t = "2026-11-28T10:00:00.5Z";
    let blob = |c: char| format!("/v2/app/blobs/{}", d(c));
    vec![
        line(t, "GET", &blob('1'), "aws:us-east-2", 307, "mirror", "east"), // 1 GiB from east
        line(t, "GET", &blob('2'), "aws:us-east-2", 307, "mirror", "east"), // 2 GiB from east
        line(t, "GET", &blob('3'), "aws:us-east-2", 307, "upstream", ""),   // 3 GiB: east lacks it
        line(t, "GET", &blob('1'), "gcp:europe-west1", 307, "mirror", "west"), // 1 GiB from west
        line(t, "GET", "/rel/tool", "gcp:europe-west1", 307, "mirror", "west"), // 1 GiB from west
        line(t, "GET", &blob('1'), "country:NZ", 307, "upstream", ""), // 1 GiB: nobody serves NZ
        line("2026-11-28T11:30:00Z", "GET", &blob('1'), "aws:us-east-2", 307, "upstream", ""), // east was down
        line(t, "HEAD", &blob('1'), "aws:us-east-2", 307, "mirror", "east"), // a request, 0 bytes
        line(t, "GET", "/v2/app/manifests/v1", "aws:us-east-2", 307, "upstream", ""), // 0 bytes
        line(t, "GET", "/v2/", "", 200, "ok", ""),
        line(t, "GET", &format!("/v2/other/blobs/{}?ns=x", d('4')), "country:NZ", 307, "upstream", ""), // no size
        "garbage".into(),
        r#"{"timestamp":"2026-11-28T10:00:00Z","level":"WARN","target":"ferry_serve::health","fields":{"message":"down"}}"#.into(),
        line("2026-11-27T23:59:59Z", "GET", &blob('1'), "aws:us-east-2", 307, "mirror", "east"), // before --from
    ]
}

fn report() -> serde_json::Value {
    let mirrors = mirrors();
    let options = Options { from: ferry_usage::time::parse("2026-11-28"), to: None, top: 10 };
    let mut usage = Usage::new(&mirrors, options);
    for l in log() {
        usage.add_line(&l);
    }
    let prices = Prices::default_table().overridden_by(Prices::parse(PRICES, "prices.yaml").unwrap());
    serde_json::from_str(&render::json(&usage.finish(&prices))).unwrap()
}

fn close(v: &serde_json::Value, expected: f64) {
    let got = v.as_f64().unwrap();
    assert!((got - expected).abs() < 1e-9, "{got} != {expected}");
}

#[test]
fn every_total_is_what_the_hand_computes() {
    let r = report();
    assert_eq!(
        r["lines"],
        serde_json::json!({"read": 14, "counted": 11, "malformed": 1, "other": 1, "outside_period": 1})
    );
    let t = &r["totals"];
    assert_eq!(t["requests"], 11);
    assert_eq!(t["redirects"], 10);
    assert_eq!(t["bytes"], 10 * GIB);
    assert_eq!(t["mirror_bytes"], 5 * GIB);
    assert_eq!(t["upstream_bytes"], 5 * GIB);
    close(&t["mirror_share"], 0.5);
    assert_eq!(t["unsized_redirects"], 1);
    // As served: east same region, free; west same region, 2 requests × $0.01 = $0.02; the
    // upstream (gcp:us-central1) sends 5 GiB to the internet: 2 × $0.20 + 3 × $0.10 = $0.70 (the
    // tier), plus 5 requests × $0.01 = $0.05. Total $0.77.
    close(&t["cost_usd"], 0.77);
    // All from the upstream: 8 GiB to the internet (aws 7, NZ 1): 2 × 0.20 + 6 × 0.10 = $1.00;
    // 2 GiB to gcp:europe-west1, another region: $0.02; 10 requests: $0.10. Total $1.12.
    close(&t["counterfactual_usd"], 1.12);
    close(&t["savings_usd"], 0.35);
    close(&t["savings_share"], 0.3125);

    let rows = |table: &str| -> Vec<(String, u64, u64)> {
        r[table]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                let key = x.get("key").or(x.get("mirror")).or(x.get("label")).unwrap().as_str().unwrap().to_string();
                (key, x["requests"].as_u64().unwrap(), x["bytes"].as_u64().unwrap())
            })
            .collect()
    };
    let s = |k: &str| k.to_string();
    assert_eq!(rows("by_outcome"), [(s("mirror"), 5, 5 * GIB), (s("upstream"), 5, 5 * GIB), (s("ok"), 1, 0)]);
    assert_eq!(rows("by_mirror"), [(s("upstream"), 5, 5 * GIB), (s("east"), 3, 3 * GIB), (s("west"), 2, 2 * GIB)]);
    close(&r["by_mirror"][0]["cost_usd"], 0.75);
    close(&r["by_mirror"][1]["cost_usd"], 0.0);
    close(&r["by_mirror"][2]["cost_usd"], 0.02);
    assert_eq!(
        rows("by_location"),
        [
            (s("aws:us-east-2"), 6, 7 * GIB),
            (s("gcp:europe-west1"), 2, 2 * GIB),
            (s("country:NZ"), 2, GIB),
            (s(""), 1, 0)
        ]
    );
    // aws: 4 of the upstream's 5 internet GiB (0.70 × 4/5) and 3 requests; NZ: 1/5 and 2 requests.
    close(&r["by_location"][0]["cost_usd"], 0.56 + 0.03);
    close(&r["by_location"][2]["cost_usd"], 0.14 + 0.02);
    close(&r["by_location"][1]["counterfactual_usd"], 0.02 + 0.02);
    assert_eq!(
        rows("by_provider"),
        [(s("(none)"), 1, 0), (s("aws"), 6, 7 * GIB), (s("country"), 2, GIB), (s("gcp"), 2, 2 * GIB)]
    );
    assert_eq!(rows("by_repository"), [(s("app"), 8, 9 * GIB), (s("/rel"), 1, GIB), (s("other"), 1, 0)]);

    // What to fix: D3 went to the upstream because east (which serves aws:us-east-2) lacks it.
    assert_eq!(
        r["missing"],
        serde_json::json!([{"mirror": "east", "object": d('3'), "repository": "app", "requests": 1, "bytes": 3 * GIB}])
    );
    assert_eq!(rows("missing_by_mirror"), [(s("east"), 1, 3 * GIB)]);
    // D1, which east lists, went to the upstream at 11:30: east was out of the routing.
    assert_eq!(
        r["mirrors_down"],
        serde_json::json!([{"mirror": "east", "requests": 1, "bytes": GIB, "first": "2026-11-28T11:30:00Z", "last": "2026-11-28T11:30:00Z", "hours": 1}])
    );
    assert_eq!(rows("locations_without_mirror"), [(s("country:NZ"), 2, GIB)]);

    // Over time: hours 10:00 and 11:00; one series per location with bytes.
    let o = &r["over_time"];
    assert_eq!(o["bucket_seconds"], 3600);
    assert_eq!(o["buckets"], serde_json::json!(["2026-11-28T10:00:00Z", "2026-11-28T11:00:00Z"]));
    assert_eq!(o["series"][0], serde_json::json!({"label": "aws:us-east-2", "bytes": [6 * GIB, GIB]}));
    assert_eq!(o["series"].as_array().unwrap().len(), 3);
}

#[test]
fn text_and_csv_carry_the_same_numbers() {
    let mirrors = mirrors();
    let mut usage = Usage::new(&mirrors, Options::default());
    for l in log() {
        usage.add_line(&l);
    }
    let prices = Prices::parse(PRICES, "prices.yaml").unwrap();
    let r = usage.finish(&prices);
    let text = render::text(&r);
    assert!(text.contains("east lacks objects its clients asked for: 1 requests, 3.0 GiB"), "{text}");
    assert!(text.contains("country:NZ has no mirror of its own"), "{text}");
    let csv = render::csv(&r);
    assert!(csv.starts_with("table,key,subkey,requests,bytes,cost_usd,counterfactual_usd\n"));
    assert!(csv.contains(&format!("\nmissing,east,{},1,{},,\n", d('3'), 3 * GIB)), "{csv}");
    assert!(csv.contains(&format!("\nmirror,west,gcp:europe-west1,2,{},0.020000,\n", 2 * GIB)), "{csv}");
}
