//! A [`Report`] as text for a terminal, JSON, or CSV (every table in one long-format file).

use std::fmt::Write as _;

use crate::usage::{label_name, Report};

/// Bytes for people: `1.5 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Dollars for people: `$1,234.56`.
pub fn usd(v: f64) -> String {
    let cents = (v.abs() * 100.0).round() as u64;
    let whole = (cents / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{}${grouped}.{:02}", if v < 0.0 { "-" } else { "" }, cents % 100)
}

/// `42.0%`.
pub fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

/// The terminal summary.
pub fn text(r: &Report) -> String {
    let mut s = String::new();
    let t = &r.totals;
    let period = match (&r.period.first_line, &r.period.last_line) {
        (Some(a), Some(b)) => format!("{a} .. {b}"),
        _ => "no lines".into(),
    };
    let _ = writeln!(s, "ferry report: {period}");
    let _ = writeln!(
        s,
        "  {} requests ({} lines read, {} malformed, {} other, {} outside the period)",
        t.requests, r.lines.read, r.lines.malformed, r.lines.other, r.lines.outside_period
    );
    let _ = writeln!(
        s,
        "  {} redirected: {} from mirrors ({}), {} from the upstream",
        bytes(t.bytes),
        bytes(t.mirror_bytes),
        percent(t.mirror_share),
        bytes(t.upstream_bytes)
    );
    let _ = writeln!(
        s,
        "  cost {} as served, {} if all from the upstream: saved {} ({})",
        usd(t.cost_usd),
        usd(t.counterfactual_usd),
        usd(t.savings_usd),
        percent(t.savings_share)
    );
    if t.unsized_redirects > 0 {
        let _ = writeln!(
            s,
            "  {} redirects of objects no inventory gives a size for (counted as 0 bytes)",
            t.unsized_redirects
        );
    }
    if !r.unpriced.is_empty() {
        let _ = writeln!(s, "  no location or prices for: {} (cost 0; add them to --prices)", r.unpriced.join(", "));
    }
    let _ = writeln!(s, "\nby origin:");
    for m in &r.by_mirror {
        let _ = writeln!(
            s,
            "  {:<24} {:>10} req {:>12} {:>12}  {}",
            m.mirror,
            m.requests,
            bytes(m.bytes),
            usd(m.cost_usd),
            m.location
        );
    }
    let _ = writeln!(s, "\nby outcome:");
    for o in &r.by_outcome {
        let _ = writeln!(s, "  {:<24} {:>10} req {:>12}", o.key, o.requests, bytes(o.bytes));
    }
    let _ = writeln!(s, "\nby location (top 10):");
    for l in r.by_location.iter().take(10) {
        let _ = writeln!(
            s,
            "  {:<24} {:>10} req {:>12} {:>12} (from the upstream: {})",
            label_name(&l.label),
            l.requests,
            bytes(l.bytes),
            usd(l.cost_usd),
            usd(l.counterfactual_usd)
        );
    }
    let _ = writeln!(s, "\nby repository (top {}):", r.by_repository.len());
    for x in &r.by_repository {
        let _ = writeln!(s, "  {:<40} {:>10} req {:>12}", x.key, x.requests, bytes(x.bytes));
    }
    let _ = writeln!(s, "\nwhat to fix next:");
    let mut nothing = true;
    for m in &r.missing_by_mirror {
        nothing = false;
        let _ = writeln!(
            s,
            "  {} lacks objects its clients asked for: {} requests, {} went to the upstream",
            m.key,
            m.requests,
            bytes(m.bytes)
        );
    }
    for m in r.missing.iter().take(10) {
        let _ = writeln!(s, "    {} {} ({}, {} req, {})", m.mirror, m.object, m.repository, m.requests, bytes(m.bytes));
    }
    for d in &r.mirrors_down {
        nothing = false;
        let _ = writeln!(
            s,
            "  {} was out of the routing in {} hour(s) between {} and {}: {} requests, {} went to the upstream",
            d.mirror,
            d.hours,
            d.first,
            d.last,
            d.requests,
            bytes(d.bytes)
        );
    }
    for l in r.locations_without_mirror.iter().take(5) {
        nothing = false;
        let _ = writeln!(
            s,
            "  {} has no mirror of its own: {} requests, {} ({} from the upstream)",
            l.label,
            l.requests,
            bytes(l.bytes),
            bytes(l.upstream_bytes)
        );
    }
    if nothing {
        let _ = writeln!(s, "  nothing: every mirror held what its clients asked for");
    }
    s
}

/// The JSON document (`--output json`).
pub fn json(r: &Report) -> String {
    serde_json::to_string_pretty(r).expect("a report serialises") + "\n"
}

fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Every table as CSV, in one long format: `table,key,subkey,requests,bytes,cost_usd,counterfactual_usd`
/// (empty where a table has no such column).
pub fn csv(r: &Report) -> String {
    let mut s = String::from("table,key,subkey,requests,bytes,cost_usd,counterfactual_usd\n");
    let mut row =
        |table: &str, key: &str, sub: &str, req: Option<u64>, b: Option<u64>, cost: Option<f64>, cf: Option<f64>| {
            let n = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
            let f = |v: Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or_default();
            let _ = writeln!(s, "{table},{},{},{},{},{},{}", field(key), field(sub), n(req), n(b), f(cost), f(cf));
        };
    let t = &r.totals;
    row("totals", "all", "", Some(t.requests), Some(t.bytes), Some(t.cost_usd), Some(t.counterfactual_usd));
    row("totals", "mirrors", "", None, Some(t.mirror_bytes), None, None);
    row("totals", "upstream", "", None, Some(t.upstream_bytes), None, None);
    row("totals", "savings", "", None, None, Some(t.savings_usd), None);
    for o in &r.by_outcome {
        row("outcome", &o.key, "", Some(o.requests), Some(o.bytes), None, None);
    }
    for m in &r.by_mirror {
        row("mirror", &m.mirror, &m.location, Some(m.requests), Some(m.bytes), Some(m.cost_usd), None);
    }
    for l in &r.by_location {
        row("location", &l.label, "", Some(l.requests), Some(l.bytes), Some(l.cost_usd), Some(l.counterfactual_usd));
    }
    for p in &r.by_provider {
        row("provider", &p.key, "", Some(p.requests), Some(p.bytes), None, None);
    }
    for x in &r.by_repository {
        row("repository", &x.key, "", Some(x.requests), Some(x.bytes), None, None);
    }
    for series in &r.over_time.series {
        for (bucket, &b) in r.over_time.buckets.iter().zip(&series.bytes) {
            row("over_time", bucket, &series.label, None, Some(b), None, None);
        }
    }
    for m in &r.missing {
        row("missing", &m.mirror, &m.object, Some(m.requests), Some(m.bytes), None, None);
    }
    for m in &r.missing_by_mirror {
        row("missing_by_mirror", &m.key, "", Some(m.requests), Some(m.bytes), None, None);
    }
    for l in &r.locations_without_mirror {
        row("location_without_mirror", &l.label, "", Some(l.requests), Some(l.bytes), None, None);
    }
    for d in &r.mirrors_down {
        row("mirror_down", &d.mirror, &format!("{}..{}", d.first, d.last), Some(d.requests), Some(d.bytes), None, None);
    }
    s
}
