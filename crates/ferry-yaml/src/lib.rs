//! YAML input bounded before parsing.
//!
//! serde_yaml_ng parses with libyaml, which takes time quadratic in the nesting depth of flow
//! collections: `deep: [[[…` 100,000 levels deep takes 27 s, `{a: {a: …` 50 s. Every YAML file
//! Ferry reads (manifests, the `ferry serve` configuration) is therefore checked here first, in
//! time linear in its size: at most [`MAX_BYTES`], nested at most [`MAX_DEPTH`] levels. Real
//! files are far inside both (an `images.yaml` nests 4 levels, a configuration 5).
//!
//! The depth is counted on yaml-rust2's events, which stop at the limit (and its scanner refuses
//! more than 255 open flow collections on its own), so the check never goes deep itself. Text
//! that yaml-rust2 cannot read but libyaml may (libyaml is more lenient, say about the
//! indentation of the lines of a flow collection or a quoted scalar) is checked by counting
//! brackets instead: see [`flow_depth`].

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use yaml_rust2::parser::{Event, Parser};

/// Largest YAML input accepted, in bytes.
pub const MAX_BYTES: usize = 64 << 20;

/// Deepest nesting of collections accepted.
pub const MAX_DEPTH: usize = 64;

/// Input refused before parsing, with the 1-based line where the limit was passed (none for the
/// size).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OutOfBounds {
    /// The 1-based line where the nesting passed [`MAX_DEPTH`]; `None` when the input is too large.
    pub line: Option<usize>,
    /// Which limit was passed, for people; also the error's `Display`.
    pub message: String,
}

impl OutOfBounds {
    fn too_deep(line: usize) -> Self {
        OutOfBounds {
            line: Some(line),
            message: format!("nested deeper than {MAX_DEPTH} levels, the limit for YAML input"),
        }
    }

    fn too_large(size: usize) -> Self {
        OutOfBounds { line: None, message: format!("{size} bytes is larger than {}", Limit) }
    }
}

/// How the size limit reads in messages.
struct Limit;

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} MiB, the limit for YAML input", MAX_BYTES >> 20)
    }
}

/// Reads a YAML file as UTF-8 text. A file larger than [`MAX_BYTES`] is refused without being
/// read whole (an `InvalidData` error saying so).
pub fn read(path: &Path) -> io::Result<String> {
    let mut bytes = Vec::new();
    File::open(path)?.take(MAX_BYTES as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > MAX_BYTES {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("the file is larger than {Limit}")));
    }
    String::from_utf8(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "stream did not contain valid UTF-8"))
}

/// Checks that `text` is at most [`MAX_BYTES`] long and nests at most [`MAX_DEPTH`] levels, in
/// time linear in its length. Only then may it be handed to serde_yaml_ng.
pub fn check(text: &str) -> Result<(), OutOfBounds> {
    if text.len() > MAX_BYTES {
        return Err(OutOfBounds::too_large(text.len()));
    }
    let mut parser = Parser::new_from_str(text);
    let mut depth = 0usize;
    loop {
        match parser.next_token() {
            Ok((Event::SequenceStart(..) | Event::MappingStart(..), mark)) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(OutOfBounds::too_deep(mark.line()));
                }
            }
            Ok((Event::SequenceEnd | Event::MappingEnd, _)) => depth = depth.saturating_sub(1),
            Ok((Event::StreamEnd, _)) => return Ok(()),
            Ok(_) => {}
            // The scanner's own limit on open flow collections (255).
            Err(e) if e.info() == "recursion limit exceeded" => return Err(OutOfBounds::too_deep(e.marker().line())),
            // Not YAML to yaml-rust2; serde_yaml_ng will say what is wrong, if anything, but only
            // once the depth is known to be bounded.
            Err(_) => return flow_depth(text),
        }
    }
}

/// Checks the nesting of flow collections by counting `[`, `{` and `]`, `}` outside comments and
/// quoted scalars, for text yaml-rust2 could not read. Block collections are left out: libyaml's
/// time on them is linear, and serde_yaml_ng refuses more than 128 levels of anything.
///
/// A quote opens a quoted scalar where a scalar can start (at the start of a line, after a blank
/// or after `[`, `{`, `,`); brackets inside plain scalars are counted, which can only make the
/// count too high, never too low, and real files do not nest 64 of them.
fn flow_depth(text: &str) -> Result<(), OutOfBounds> {
    let mut depth = 0usize;
    let mut line = 1;
    let mut previous = '\n';
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            '#' if previous.is_whitespace() => {
                // A comment: skip to the end of the line.
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            '"' | '\'' if previous.is_whitespace() || matches!(previous, '[' | '{' | ',') => {
                let mut escaped = false;
                while let Some(q) = chars.next() {
                    match q {
                        '\n' => line += 1,
                        '\\' if c == '"' && !escaped => {
                            escaped = true;
                            continue;
                        }
                        // `''` is an escaped quote inside a single-quoted scalar.
                        '\'' if c == '\'' && chars.peek() == Some(&'\'') => {
                            chars.next();
                        }
                        q if q == c && !escaped => break,
                        _ => {}
                    }
                    escaped = false;
                }
            }
            '[' | '{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(OutOfBounds::too_deep(line));
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        // After a comment or a quoted scalar the next character follows something that is not
        // a blank; a newline ends both kinds of comment, so it stands in as the previous one.
        previous = match c {
            '#' => '\n',
            '"' | '\'' => 'q',
            c => c,
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: usize = 100_000;

    fn deep_forms() -> Vec<String> {
        vec![
            "[".repeat(N) + &"]".repeat(N),
            format!("deep: {}{}", "[".repeat(N), "]".repeat(N)),
            "{a: ".repeat(N) + "x" + &"}".repeat(N),
            format!("deep: {}x{}", "{a: ".repeat(N), "}".repeat(N)),
            "- ".repeat(N) + "x",
            format!("a:\n{}", (1..=N).map(|i| format!("{}k{i}:\n", " ".repeat(i.min(200)))).collect::<String>()),
        ]
    }

    #[test]
    fn deep_input_is_refused_at_the_line_of_the_limit() {
        for (i, text) in deep_forms().iter().enumerate() {
            let e = check(text).expect_err(&format!("form {i}"));
            assert!(e.message.contains("nested deeper than 64 levels"), "form {i}: {e}");
            assert!(e.line.is_some(), "form {i}");
        }
        // A block sequence nested one level a line is refused on the line of level 65.
        let stairs: String = (0..100).map(|i| format!("{}- \n", " ".repeat(2 * i))).collect();
        assert_eq!(check(&stairs).unwrap_err().line, Some(65));
        assert_eq!(check(&format!("a: b\nc: {}", "[".repeat(N))).unwrap_err().line, Some(2));
    }

    #[test]
    fn ordinary_input_passes() {
        for text in [
            "",
            "# nothing\n",
            "registries:\n- name: gcr.io/a\n  src: true\n- {name: gcr.io/b}\nimages:\n- name: x\n  dmap:\n    \"sha256:a\": [\"v1\", v2]\n",
            "a:\n  b: [\n    1, 2\n  ]\n",
            "a: \"[[[[\"\nb: '{{{{'\n# [[[[\n",
            "---\na: 1\n---\nb: 2\n",
        ] {
            assert_eq!(check(text), Ok(()), "{text:?}");
        }
        let exactly: String = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert_eq!(check(&exactly), Ok(()));
        assert!(check(&("[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1))).is_err());
    }

    #[test]
    fn text_yaml_rust2_cannot_read_is_bounded_by_its_brackets() {
        // libyaml accepts these (lines of a flow collection or quoted scalar indented no deeper
        // than their parent); yaml-rust2 does not.
        let lenient = ["a:\n  b: [\n  1, 2\n  ]\n", "a:\n  b: \"x\n  y\"\n", "a: [-]\n"];
        for text in lenient {
            let mut parser = Parser::new_from_str(text);
            let read = std::iter::from_fn(|| match parser.next_token() {
                Ok((Event::StreamEnd, _)) => None,
                event => Some(event),
            });
            assert!(read.into_iter().any(|event| event.is_err()), "yaml-rust2 reads {text:?}");
            assert_eq!(check(text), Ok(()), "{text:?}");
            let deep = format!("{text}z: {}{}\n", "[".repeat(N), "]".repeat(N));
            let e = check(&deep).unwrap_err();
            assert_eq!(e.line, Some(text.lines().count() + 1), "{text:?}");
        }
        // Brackets inside quoted scalars and comments, and their escapes, are not counted.
        let quoted = format!(
            "a:\n  b: \"x\n  y\"\nc: \"{open}\\\"{open}\"\nd: '{open}''{open}'\ne: x # {open}\nf: [[a]]\n",
            open = "[".repeat(60)
        );
        assert_eq!(flow_depth(&quoted), Ok(()));
        assert!(flow_depth(&format!("{quoted}g: {}\n", "{".repeat(65))).is_err());
    }

    #[test]
    fn size_is_bounded() {
        let big = "#".repeat(MAX_BYTES + 1);
        let e = check(&big).unwrap_err();
        assert_eq!(
            e,
            OutOfBounds {
                line: None,
                message: format!("{} bytes is larger than 64 MiB, the limit for YAML input", MAX_BYTES + 1)
            }
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.yaml");
        std::fs::write(&path, &big).unwrap();
        let e = read(&path).unwrap_err();
        assert_eq!(e.to_string(), "the file is larger than 64 MiB, the limit for YAML input");
        std::fs::write(&path, &big[1..]).unwrap();
        assert_eq!(read(&path).unwrap().len(), MAX_BYTES);
        std::fs::write(&path, [b'a', 0xff]).unwrap();
        assert_eq!(read(&path).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
