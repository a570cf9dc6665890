//! JSON written byte for byte as Go's `encoding/json` writes it, because cosign is written in Go and
//! the bytes it signs or hashes are the bytes `json.Marshal` produced.
//!
//! Struct fields keep their declaration order in both languages, and maps are sorted by key in
//! both (Go always sorts; here every map is a `BTreeMap`, never a `serde_json::Value`, whose key
//! order depends on a cargo feature another crate may turn on). What differs is string escaping:
//! Go also escapes `<`, `>` and `&` (as `\u003c`, `\u003e`, `\u0026`) and U+2028/U+2029, and writes
//! backspace and form feed as `\u0008`/`\u000c` where serde_json writes `\b`/`\f`.

use std::io;

use serde::Serialize;
use serde_json::ser::{CharEscape, CompactFormatter, Formatter};

/// Compact output with Go's string escaping; everything else is serde_json's compact formatter.
struct GoFormatter;

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        let mut rest = fragment;
        while let Some(at) = rest.find(['<', '>', '&', '\u{2028}', '\u{2029}']) {
            writer.write_all(&rest.as_bytes()[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            write!(writer, "\\u{:04x}", c as u32)?;
            rest = &rest[at + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }

    fn write_char_escape<W: ?Sized + io::Write>(&mut self, writer: &mut W, escape: CharEscape) -> io::Result<()> {
        match escape {
            CharEscape::Backspace => writer.write_all(b"\\u0008"),
            CharEscape::FormFeed => writer.write_all(b"\\u000c"),
            other => CompactFormatter.write_char_escape(writer, other),
        }
    }
}

/// `value` as Go's `json.Marshal` would write the same structure.
pub(crate) fn to_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    // Serialising plain structs, strings and string maps into a Vec cannot fail.
    value.serialize(&mut serializer).expect("serialising to memory with string keys does not fail");
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn escapes_like_go() {
        let s = "a<b>&c\u{2028}\u{2029}\u{8}\u{c}\n\t\"\\/é\u{1}";
        assert_eq!(
            String::from_utf8(to_vec(s)).unwrap(),
            r#""a\u003cb\u003e\u0026c\u2028\u2029\u0008\u000c\n\t\"\\/é\u0001""#
        );
    }

    #[test]
    fn maps_are_sorted_and_compact() {
        let m: BTreeMap<&str, &str> = [("z", "1"), ("a", "2"), ("B", "3")].into_iter().collect();
        assert_eq!(to_vec(&m), br#"{"B":"3","a":"2","z":"1"}"#);
    }
}
