//! The request-target parser of `ferry serve`: `parse_request(path, query)`, the only gate
//! between a client's bytes and a `Location` header.
//!
//! Input: a request target, `path[?query]`.
#![no_main]

use ferry_serve::{parse_request, Resource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(target) = std::str::from_utf8(data) else { return };
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    match parse_request(path, query) {
        Ok(request) => {
            // What was accepted prints back to exactly the path it came from.
            let printed = match &request.resource {
                Resource::ApiBase => {
                    assert!(path == "/v2" || path == "/v2/", "{path:?} taken for /v2/");
                    path.to_string()
                }
                Resource::Blob { name, digest } => format!("/v2/{name}/blobs/{digest}"),
                Resource::Manifest { name, reference } => format!("/v2/{name}/manifests/{reference}"),
                Resource::TagsList { name } => format!("/v2/{name}/tags/list"),
                Resource::Referrers { name, digest } => format!("/v2/{name}/referrers/{digest}"),
                Resource::File { path } => {
                    assert!(!path.as_str().starts_with("/v2/"), "registry path {path:?} taken for a file");
                    path.as_str().to_string()
                }
            };
            assert_eq!(printed, path);
            // Nothing that could be decoded or normalised into something else was accepted.
            assert!(path.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'%' && b != b'\\'), "{path:?}");
            assert!(!path.contains("//") && !path.contains("/./") && !path.contains("/../"), "{path:?}");
            assert!(!ferry_serve::request::is_reserved(path));
            match (&request.query, query) {
                (Some(q), Some(raw)) => {
                    assert_eq!(q.as_str(), raw);
                    assert!(!raw.contains(['#', ' ', '"', '\\', '<', '>']));
                }
                (None, raw) => assert!(raw.is_none_or(str::is_empty) || request.resource == Resource::ApiBase),
                (Some(_), None) => panic!("a query out of nothing"),
            }
            // The same request, parsed again, is the same.
            assert_eq!(parse_request(path, query), Ok(request));
        }
        Err(reject) => {
            assert!(matches!(reject.status(), 400 | 404));
            assert!(!reject.message().is_empty());
        }
    }
});
