//! The line of each entry of a YAML list.
//!
//! serde_yaml_ng reports a position only with an error, but cross-entry checks (two sources,
//! duplicate registries) and [`crate::Image::line`] need the line of entries that parsed fine. So
//! the text is walked a second time as the events of yaml-rust2's parser, which carry marks; lines
//! are therefore exact whatever the YAML style (block or flow).
//!
//! An entry's line is where libyaml (serde_yaml_ng's parser) starts its node: at its first property
//! (anchor or tag) if it has one, at the `|`/`>` header of a block scalar, on the `-` line of an
//! empty entry, and otherwise at its content. yaml-rust2 marks an event at its content token
//! instead, so the first three are looked up in the text or its tokens (see [`Start`]).

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, Scanner, TScalarStyle, Token, TokenType};

/// Where the list is: the document's root, or the value of a key of the root mapping.
#[derive(Clone, Copy)]
pub(crate) enum List<'k> {
    Root,
    Key(&'k str),
}

/// 1-based start lines of the list's entries, in order. Empty if the list is absent; it is only
/// ever called on text that serde_yaml_ng has already parsed, so parse errors just end the walk.
/// yaml-rust2 follows YAML 1.2 more strictly than libyaml, though: text that libyaml accepts but
/// it rejects (say a flow collection whose lines are indented no deeper than its parent block)
/// yields the lines of the entries before the error only.
pub(crate) fn entry_lines(text: &str, list: List) -> Vec<usize> {
    let mut walk = Walk {
        text,
        list,
        lines: Vec::new(),
        open: Vec::new(),
        entries_at: None,
        after_wanted_key: false,
        done: false,
        tokens: None,
    };
    // Only the first document is read. A parse error ends the walk, keeping the lines found in the
    // events delivered before it.
    let _ = Parser::new_from_str(text).load(&mut walk, false);
    walk.lines
}

/// The walk over the parser's events.
struct Walk<'t, 'k> {
    text: &'t str,
    list: List<'k>,
    lines: Vec<usize>,
    /// For each open collection: is it a mapping, and how many child nodes it has had so far.
    open: Vec<(bool, usize)>,
    /// Depth (number of open collections) of the list's entries, once the list has started.
    entries_at: Option<usize>,
    after_wanted_key: bool,
    /// The list or the first document has ended: later events are ignored.
    done: bool,
    /// Scanned only if an entry needs it (see [`Start`]).
    tokens: Option<TokenLines>,
}

/// The start of a node; a scalar's text is kept to recognise mapping keys.
enum Node {
    Scalar(String),
    Alias,
    Sequence,
    Mapping,
}

/// How to find the line of a node from the mark of its event, which is that of its content token.
#[derive(Clone, Copy)]
enum Start {
    /// The content starts the node.
    Content,
    /// The node starts at its first property (anchor or tag), which may be on an earlier line.
    Properties,
    /// A block scalar starts at its `|`/`>` header, which may be on a line before its content.
    BlockScalar,
    /// An empty node (no properties, no content) is marked at the token after it, but starts
    /// where the token before it (the entry's `-`) is.
    Empty,
}

impl MarkedEventReceiver for Walk<'_, '_> {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.done {
            return;
        }
        let properties = |anchor: usize, tag: bool| {
            if anchor != 0 || tag {
                Start::Properties
            } else {
                Start::Content
            }
        };
        let (node, start) = match event {
            Event::Scalar(value, style, anchor, tag) => {
                let start = match (properties(anchor, tag.is_some()), style) {
                    (Start::Content, TScalarStyle::Literal | TScalarStyle::Folded) => Start::BlockScalar,
                    (Start::Content, TScalarStyle::Plain) if value.is_empty() => Start::Empty,
                    (start, _) => start,
                };
                (Node::Scalar(value), start)
            }
            Event::Alias(_) => (Node::Alias, Start::Content),
            Event::SequenceStart(anchor, tag) => (Node::Sequence, properties(anchor, tag.is_some())),
            Event::MappingStart(anchor, tag) => (Node::Mapping, properties(anchor, tag.is_some())),
            Event::SequenceEnd | Event::MappingEnd => return self.collection_end(),
            Event::StreamStart | Event::DocumentStart => return,
            Event::Nothing | Event::StreamEnd | Event::DocumentEnd => {
                self.done = true;
                return;
            }
        };
        self.node_start(node, start, mark);
    }
}

impl Walk<'_, '_> {
    fn collection_end(&mut self) {
        self.open.pop();
        if self.entries_at == Some(self.open.len() + 1) {
            self.done = true;
        }
    }

    fn node_start(&mut self, node: Node, start: Start, mark: Marker) {
        let depth = self.open.len();
        if self.entries_at == Some(depth) {
            let line = self.line(start, mark);
            self.lines.push(line);
        }
        // This node's position among its parent's children: a mapping's alternate key, value.
        let index = self.open.last_mut().map(|(_, n)| {
            *n += 1;
            *n - 1
        });
        let in_root_mapping = depth == 1 && self.open[0].0;
        if in_root_mapping && index.is_some_and(|i| i % 2 == 0) {
            self.after_wanted_key = matches!((self.list, &node), (List::Key(k), Node::Scalar(s)) if s == k);
        }
        let starts_list = matches!(node, Node::Sequence)
            && match self.list {
                List::Root => depth == 0,
                List::Key(_) => in_root_mapping && index.is_some_and(|i| i % 2 == 1) && self.after_wanted_key,
            };
        if starts_list {
            self.entries_at = Some(depth + 1);
        }
        match node {
            Node::Sequence => self.open.push((false, 0)),
            Node::Mapping => self.open.push((true, 0)),
            Node::Scalar(_) | Node::Alias => {}
        }
    }

    /// The 1-based line where the node marked at `mark` starts. yaml-rust2's lines are 1-based.
    fn line(&mut self, start: Start, mark: Marker) -> usize {
        let text = self.text;
        let found = match start {
            Start::Content => None,
            Start::BlockScalar => {
                let tokens = self.tokens.get_or_insert_with(|| TokenLines::scan(text));
                let previous = tokens.before_block_scalar.get(&mark.index());
                previous.and_then(|&(line, col)| first_filled_line(text, line, col))
            }
            Start::Properties => {
                let tokens = self.tokens.get_or_insert_with(|| TokenLines::scan(text));
                tokens.first_property.get(&mark.index()).copied()
            }
            Start::Empty => {
                let tokens = self.tokens.get_or_insert_with(|| TokenLines::scan(text));
                tokens.previous.get(&mark.index()).copied()
            }
        };
        found.unwrap_or(mark.line())
    }
}

/// Lines of tokens, keyed by the mark index (a character offset) of the token they precede. The
/// parser marks an event with properties at the token after them, and an empty node at the token
/// after it; only the first token at an index counts, as the parser peeks at that one.
struct TokenLines {
    /// Line of the first of the properties (anchor, tag) just before the token.
    first_property: HashMap<usize, usize>,
    /// Line of the token just before it.
    previous: HashMap<usize, usize>,
    /// Line and column of the token just before a block scalar, keyed by the block scalar's own
    /// index (the first token there may be another).
    before_block_scalar: HashMap<usize, (usize, usize)>,
}

impl TokenLines {
    fn scan(text: &str) -> Self {
        let mut lines = TokenLines {
            first_property: HashMap::new(),
            previous: HashMap::new(),
            before_block_scalar: HashMap::new(),
        };
        let mut properties_line = None;
        let mut previous: Option<Marker> = None;
        // The same scanner the parser reads, so the same tokens and marks; it stops at an error.
        for Token(mark, kind) in Scanner::new(text.chars()) {
            if let TokenType::Anchor(_) | TokenType::Tag(..) = kind {
                properties_line.get_or_insert(mark.line());
            } else if let Some(line) = properties_line.take() {
                lines.first_property.entry(mark.index()).or_insert(line);
            }
            if let Some(before) = previous.replace(mark) {
                lines.previous.entry(mark.index()).or_insert(before.line());
                if let TokenType::Scalar(TScalarStyle::Literal | TScalarStyle::Folded, _) = kind {
                    let at = (before.line(), before.col());
                    lines.before_block_scalar.entry(mark.index()).or_insert(at);
                }
            }
        }
        lines
    }
}

/// The first line, from `line` on (1-based), with something on it other than blanks and comments,
/// looking on `line` only from column `col` (0-based, in characters) on.
fn first_filled_line(text: &str, line: usize, col: usize) -> Option<usize> {
    let from = line.checked_sub(1)?;
    yaml_lines(text)
        .enumerate()
        .skip(from)
        .find(|&(i, text)| {
            let skip = if i == from { col } else { 0 };
            let mut rest = text.chars().skip(skip).skip_while(|c| matches!(c, ' ' | '\t'));
            rest.next().is_some_and(|c| c != '#')
        })
        .map(|(i, _)| i + 1)
}

/// The lines of `text` as YAML counts them: each ends at `\n`, `\r\n` or `\r`.
fn yaml_lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n').flat_map(|line| line.strip_suffix('\r').unwrap_or(line).split('\r'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_style() {
        let text = "# comment\nregistries:\n- name: a\n  src: true\n-\n  name: b\nimages:\n  - name: x\n    dmap:\n      k: [\"v\"]\n  - {name: y}\n";
        // An entry's line is where its node starts: for `-` alone on a line, the next line.
        assert_eq!(entry_lines(text, List::Key("registries")), [3, 6]);
        assert_eq!(entry_lines(text, List::Key("images")), [8, 11]);
        assert_eq!(entry_lines(text, List::Key("absent")), [] as [usize; 0]);
        assert_eq!(entry_lines(text, List::Root), [] as [usize; 0]);
    }

    #[test]
    fn flow_style_and_nesting() {
        let text = "[{name: a,\n  dmap: {k: [x, y]}},\n {name: b}, [n, [m]],\n &a c, *a]\n";
        assert_eq!(entry_lines(text, List::Root), [1, 3, 3, 4, 4]);
        // A key of the same name deeper down is not the root key.
        let text = "images:\n- name: x\n  images: [1]\nregistries: []\n";
        assert_eq!(entry_lines(text, List::Key("images")), [2]);
        assert_eq!(entry_lines(text, List::Key("registries")), [] as [usize; 0]);
    }

    #[test]
    fn properties_block_scalars_and_empty_entries() {
        // Lines where libyaml starts these nodes: at the first property (anchor or tag), at a
        // block scalar's header, and on the `-` line of an empty entry.
        let text = "images:\n- &a # c\n\n  name: x\n- !!map &b\n  name: y\n- *a\n-  # c\n  |\n  text\n- \n- [&c\n   z, !!str\n\n   w]\n- >-\n";
        assert_eq!(entry_lines(text, List::Key("images")), [2, 5, 7, 9, 11, 12, 16]);
        let text = "[&c\n z, !!str\n\n w, !t\n  {a: 1},\n &d [2]]\n";
        assert_eq!(entry_lines(text, List::Root), [1, 2, 4, 6]);
        let text = "images:\r\n- &a\r\n  name: x\r\n- |\r\n\r\n  text\r\n-\r\n- y\r\n";
        assert_eq!(entry_lines(text, List::Key("images")), [2, 4, 7, 8]);
    }

    #[test]
    fn broken_or_empty_text() {
        assert_eq!(entry_lines("", List::Root), [] as [usize; 0]);
        assert_eq!(entry_lines("- a\n- [b\n", List::Root), [1, 2]);
        assert_eq!(entry_lines("images: x\n", List::Key("images")), [] as [usize; 0]);
    }
}
