//! The record's schema as documented in docs/audit.md names every field a record has, at every
//! level, so the page cannot drift from what is written.

use std::time::SystemTime;

use ferry_record::RunRecord;

/// Every key of `value`, nested keys as `outer.inner`, except inside `report` (the command's own
/// JSON report, documented with its command).
fn keys(value: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    if let Some(map) = value.as_object() {
        for (key, inner) in map {
            let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            if path != "report" {
                keys(inner, &path, out);
            }
            out.push(path);
        }
    }
}

#[test]
fn docs_audit_md_documents_every_field() {
    std::env::set_var("GITHUB_ACTIONS", "true");
    std::env::set_var("GITHUB_RUN_ID", "1");
    let manifests = ferry_record::ManifestsRevision { path: "m".into(), commit: "abc".into(), dirty: false };
    let record = RunRecord::new("promote images", &[], SystemTime::now(), Some(manifests), 0, serde_json::json!({}));
    let mut fields = Vec::new();
    keys(&serde_json::to_value(&record).unwrap(), "", &mut fields);
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/audit.md")).unwrap();
    let schema = &doc[doc.find("### Schema").expect("a schema section")..];
    for field in fields {
        let leaf = field.rsplit('.').next().unwrap();
        assert!(
            schema.contains(&format!("`{field}`")) || schema.contains(&format!("`{leaf}`")),
            "docs/audit.md's schema does not name {field}"
        );
    }
}
