//! The report as one self-contained HTML page: headline figures, four inline SVG charts (bytes
//! by location over time, bytes and cost by origin, cost as served against the counterfactual,
//! the top missing objects) and the tables of what to fix next. Nothing is fetched from the
//! network; a few lines of script only check that the charts laid out.

use std::fmt::Write as _;

use crate::render::{bytes, percent, usd};
use crate::usage::{label_name, Report};

/// Colours of the series, distinguishable and readable on white.
const COLOURS: [&str; 8] = ["#2563eb", "#16a34a", "#ea580c", "#9333ea", "#0891b2", "#ca8a04", "#db2777", "#64748b"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The page.
pub fn page(r: &Report) -> String {
    let t = &r.totals;
    let mut h = String::new();
    let period = match (&r.period.first_line, &r.period.last_line) {
        (Some(a), Some(b)) => format!("{} – {}", &a[..16].replace('T', " "), &b[..16].replace('T', " ")),
        _ => "no lines".into(),
    };
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Ferry report · {period}</title><style>
body{{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1f2937}}
header{{background:#0f172a;color:#f8fafc;padding:14px 28px}} header h1{{margin:0;font-size:20px}} header p{{margin:2px 0 0;color:#cbd5e1}}
main{{padding:18px 28px;max-width:1400px;margin:auto}}
.cards{{display:grid;grid-template-columns:repeat(5,1fr);gap:12px;margin-bottom:16px}}
.card{{background:#fff;border-radius:8px;padding:10px 14px;box-shadow:0 1px 2px #0002}} .card b{{display:block;font-size:22px}} .card span{{color:#64748b;font-size:12px;text-transform:uppercase;letter-spacing:.04em}}
.card.good b{{color:#15803d}}
.grid{{display:grid;grid-template-columns:1fr 1fr;gap:14px}} section{{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 2px #0002}}
section h2{{font-size:15px;margin:0 0 6px}} svg{{width:100%;height:auto;display:block}} svg text{{font-size:11px;fill:#475569}}
.legend{{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px;margin-top:4px}} .legend i{{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:-1px}}
table{{border-collapse:collapse;width:100%;font-size:13px}} td,th{{padding:3px 6px;border-bottom:1px solid #e5e7eb;text-align:left}} td.n,th.n{{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}}
code{{font-size:12px}} footer{{color:#64748b;font-size:12px;padding:8px 28px 20px;max-width:1400px;margin:auto}}
</style></head><body>
<header><h1>Ferry report</h1><p>{period} UTC · {} requests · prices: {} ({})</p></header><main>
<div class="cards">
<div class="card"><span>Bytes redirected</span><b>{}</b></div>
<div class="card"><span>From mirrors</span><b>{}</b></div>
<div class="card"><span>Cost as served</span><b>{}</b></div>
<div class="card"><span>All from upstream</span><b>{}</b></div>
<div class="card good"><span>Saved</span><b>{} · {}</b></div>
</div><div class="grid">
"#,
        t.requests,
        esc(&r.prices.date),
        esc(&r.prices.upstream),
        bytes(t.bytes),
        percent(t.mirror_share),
        usd(t.cost_usd),
        usd(t.counterfactual_usd),
        usd(t.savings_usd),
        percent(t.savings_share),
    );
    over_time(&mut h, r);
    let origins: Vec<(String, Vec<f64>)> =
        r.by_mirror.iter().map(|m| (m.mirror.clone(), vec![m.bytes as f64, m.cost_usd])).collect();
    bars(&mut h, "by-origin", "Bytes and cost by origin", &origins, &["bytes", "cost"], &[bytes_f, usd]);
    let savings = vec![
        ("as served".to_string(), vec![t.cost_usd]),
        ("all from upstream".to_string(), vec![t.counterfactual_usd]),
    ];
    bars_each(
        &mut h,
        "savings",
        &format!("Cost: as served vs. all from the upstream (saved {})", usd(t.savings_usd)),
        &savings,
    );
    let missing: Vec<(String, Vec<f64>)> = r
        .missing
        .iter()
        .filter(|m| m.bytes > 0)
        .take(10)
        .map(|m| (format!("{} · {}", m.mirror, short(&m.object)), vec![m.bytes as f64]))
        .collect();
    bars(&mut h, "missing", "Top objects a mirror lacked (sent to the upstream)", &missing, &["bytes"], &[bytes_f]);
    h.push_str("</div>\n");
    fix_next(&mut h, r);
    let _ = write!(
        h,
        r#"</main><footer>Made by <code>ferry report</code> from <code>ferry serve</code>'s access log ({} lines read, {} counted). Prices: {}. Bytes are the sizes the mirrors' inventories record, counted per GET redirect.</footer>
<script>
(function () {{
  var out = {{}};
  document.querySelectorAll('svg[data-chart]').forEach(function (svg) {{
    var box = svg.getBoundingClientRect();
    out[svg.dataset.chart] = {{series: svg.querySelectorAll('g.series').length, width: Math.round(box.width), height: Math.round(box.height)}};
  }});
  document.body.dataset.rendered = JSON.stringify(out);
  console.log('ferry-report-rendered ' + JSON.stringify(out));
}})();
</script></body></html>
"#,
        r.lines.read,
        r.lines.counted,
        esc(r.prices.source.trim_end_matches('.'))
    );
    h
}

fn bytes_f(v: f64) -> String {
    bytes(v as u64)
}

fn short(object: &str) -> String {
    match object.strip_prefix("sha256:") {
        Some(hex) if hex.len() > 12 => format!("{}…", &hex[..12]),
        _ if object.chars().count() > 28 => {
            let tail: Vec<char> = object.chars().rev().take(26).collect();
            format!("…{}", tail.into_iter().rev().collect::<String>())
        }
        _ => object.to_string(),
    }
}

fn legend(h: &mut String, names: &[&str]) {
    h.push_str("<div class=\"legend\">");
    for (i, n) in names.iter().enumerate() {
        let _ = write!(h, "<span><i style=\"background:{}\"></i>{}</span>", COLOURS[i % COLOURS.len()], esc(n));
    }
    h.push_str("</div>");
}

/// Stacked columns: one per time bucket, one series per location.
fn over_time(h: &mut String, r: &Report) {
    let o = &r.over_time;
    let (w, ht, left, bottom) = (640.0, 260.0, 64.0, 24.0);
    let n = o.buckets.len().max(1);
    let totals: Vec<u64> = (0..o.buckets.len()).map(|i| o.series.iter().map(|s| s.bytes[i]).sum()).collect();
    let max = totals.iter().copied().max().unwrap_or(0).max(1) as f64;
    let unit = if o.bucket_seconds == 86_400 { "day" } else { "hour" };
    let _ = write!(
        h,
        "<section><h2>Bytes by location, per {unit}</h2><svg data-chart=\"over-time\" viewBox=\"0 0 {w} {ht}\" role=\"img\">"
    );
    axis(h, left, w, ht - bottom, max, &bytes_f);
    let slot = (w - left - 8.0) / n as f64;
    let bar = (slot * 0.8).max(1.0);
    let mut base = vec![0.0f64; n];
    for (si, s) in o.series.iter().enumerate() {
        let _ = write!(
            h,
            "<g class=\"series\" data-series=\"{}\" fill=\"{}\">",
            esc(&s.label),
            COLOURS[si % COLOURS.len()]
        );
        for (i, &b) in s.bytes.iter().enumerate() {
            if b == 0 {
                continue;
            }
            let hh = b as f64 / max * (ht - bottom - 10.0);
            base[i] += hh;
            let _ = write!(
                h,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{hh:.1}\"><title>{} {}: {}</title></rect>",
                left + 4.0 + i as f64 * slot,
                ht - bottom - base[i],
                esc(&s.label),
                esc(&o.buckets[i]),
                bytes(b)
            );
        }
        h.push_str("</g>");
    }
    let step = (n / 6).max(1);
    for i in (0..o.buckets.len()).step_by(step) {
        let label = &o.buckets[i];
        let shown = if o.bucket_seconds == 86_400 { &label[5..10] } else { &label[5..16] };
        let _ = write!(
            h,
            "<text x=\"{:.1}\" y=\"{}\">{}</text>",
            left + 4.0 + i as f64 * slot,
            ht - 6.0,
            esc(&shown.replace('T', " "))
        );
    }
    h.push_str("</svg>");
    let names: Vec<&str> = o.series.iter().map(|s| s.label.as_str()).collect();
    legend(h, &names);
    h.push_str("</section>\n");
}

fn axis(h: &mut String, left: f64, w: f64, bottom: f64, max: f64, fmt: &dyn Fn(f64) -> String) {
    for k in 0..=4 {
        let v = max * k as f64 / 4.0;
        let y = bottom - (bottom - 10.0) * k as f64 / 4.0;
        let _ = write!(
            h,
            "<line x1=\"{left}\" x2=\"{w}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e5e7eb\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left - 4.0,
            y + 4.0,
            esc(&fmt(v))
        );
    }
}

/// Horizontal bars: one row per item, one bar per series in it, each series scaled to its own
/// maximum (bytes and dollars share no axis), the value written at the bar's end.
fn bars(
    h: &mut String,
    id: &str,
    title: &str,
    rows: &[(String, Vec<f64>)],
    series: &[&str],
    fmt: &[fn(f64) -> String],
) {
    let row_h = 14.0 * series.len() as f64 + 10.0;
    let (w, left) = (640.0, 170.0);
    let ht = (rows.len() as f64 * row_h + 8.0).max(40.0);
    let _ =
        write!(h, "<section><h2>{}</h2><svg data-chart=\"{id}\" viewBox=\"0 0 {w} {ht}\" role=\"img\">", esc(title));
    if rows.is_empty() {
        let _ = write!(h, "<text x=\"10\" y=\"24\">nothing to show</text>");
    }
    for (i, &name) in series.iter().enumerate() {
        let max = rows.iter().map(|r| r.1[i]).fold(0.0, f64::max).max(f64::MIN_POSITIVE);
        let _ = write!(h, "<g class=\"series\" data-series=\"{}\" fill=\"{}\">", esc(name), COLOURS[i % COLOURS.len()]);
        for (ri, (label, values)) in rows.iter().enumerate() {
            let v = values[i];
            let y = 4.0 + ri as f64 * row_h + i as f64 * 14.0;
            let bw = (v / max * (w - left - 90.0)).max(if v > 0.0 { 1.0 } else { 0.0 });
            let _ = write!(
                h,
                "<rect x=\"{left}\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"12\" rx=\"2\"><title>{}: {}</title></rect><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                esc(label),
                esc(&fmt[i](v)),
                left + bw + 4.0,
                y + 10.0,
                esc(&fmt[i](v))
            );
        }
        h.push_str("</g>");
    }
    for (ri, (label, _)) in rows.iter().enumerate() {
        let y = 4.0 + ri as f64 * row_h + 10.0;
        let _ = write!(h, "<text x=\"{:.1}\" y=\"{y:.1}\" text-anchor=\"end\">{}</text>", left - 6.0, esc(label));
    }
    h.push_str("</svg>");
    if series.len() > 1 {
        legend(h, series);
    }
    h.push_str("</section>\n");
}

/// Horizontal bars, each its own series (and colour), on one dollar scale.
fn bars_each(h: &mut String, id: &str, title: &str, rows: &[(String, Vec<f64>)]) {
    let (w, left, row_h) = (640.0, 170.0, 34.0);
    let ht = rows.len() as f64 * row_h + 8.0;
    let max = rows.iter().map(|r| r.1[0]).fold(0.0, f64::max).max(f64::MIN_POSITIVE);
    let _ =
        write!(h, "<section><h2>{}</h2><svg data-chart=\"{id}\" viewBox=\"0 0 {w} {ht}\" role=\"img\">", esc(title));
    for (ri, (label, values)) in rows.iter().enumerate() {
        let y = 6.0 + ri as f64 * row_h;
        let bw = (values[0] / max * (w - left - 90.0)).max(1.0);
        let _ = write!(
            h,
            "<g class=\"series\" data-series=\"{}\" fill=\"{}\"><rect x=\"{left}\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"24\" rx=\"3\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text></g><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            esc(label),
            COLOURS[(ri * 2) % COLOURS.len()],
            left + bw + 4.0,
            y + 16.0,
            usd(values[0]),
            left - 6.0,
            y + 16.0,
            esc(label)
        );
    }
    h.push_str("</svg></section>\n");
}

fn fix_next(h: &mut String, r: &Report) {
    h.push_str("<div class=\"grid\" style=\"margin-top:14px\"><section><h2>What to fix next</h2><table><tr><th>finding</th><th class=n>requests</th><th class=n>bytes</th></tr>");
    let mut any = false;
    for m in &r.missing_by_mirror {
        any = true;
        let _ = write!(h, "<tr><td>mirror <b>{}</b> lacks objects its clients asked for</td><td class=n>{}</td><td class=n>{}</td></tr>", esc(&m.key), m.requests, bytes(m.bytes));
    }
    for d in &r.mirrors_down {
        any = true;
        let _ = write!(
            h,
            "<tr><td>mirror <b>{}</b> was down in {} hour(s), {} – {}</td><td class=n>{}</td><td class=n>{}</td></tr>",
            esc(&d.mirror),
            d.hours,
            esc(&d.first[..16].replace('T', " ")),
            esc(&d.last[..16].replace('T', " ")),
            d.requests,
            bytes(d.bytes)
        );
    }
    for l in r.locations_without_mirror.iter().take(5) {
        any = true;
        let _ = write!(
            h,
            "<tr><td><b>{}</b> has no mirror of its own</td><td class=n>{}</td><td class=n>{}</td></tr>",
            esc(&l.label),
            l.requests,
            bytes(l.bytes)
        );
    }
    if !any {
        h.push_str("<tr><td colspan=3>nothing: every mirror held what its clients asked for</td></tr>");
    }
    h.push_str("</table></section><section><h2>Locations</h2><table><tr><th>location</th><th class=n>requests</th><th class=n>bytes</th><th class=n>from mirrors</th><th class=n>cost</th><th class=n>all from upstream</th></tr>");
    for l in r.by_location.iter().take(12) {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
            esc(label_name(&l.label)),
            l.requests,
            bytes(l.bytes),
            percent(if l.bytes > 0 { l.mirror_bytes as f64 / l.bytes as f64 } else { 0.0 }),
            usd(l.cost_usd),
            usd(l.counterfactual_usd)
        );
    }
    h.push_str("</table></section></div>\n");
}
