//! The line of each node of a YAML document.
//!
//! serde_yaml_ng reports a position only with an error, but cross-entry checks (two sources,
//! duplicate registries), checks of each scalar after deserializing, [`crate::Image::line`] and the
//! line of each digest need the lines of nodes that parsed fine. So the text is read a second time
//! into a [`Document`], a tree built from the events of yaml-rust2's parser, which carry marks;
//! lines are therefore exact whatever the YAML style (block or flow).
//!
//! A node's line is where libyaml (serde_yaml_ng's parser) starts it: at its first property
//! (anchor or tag) if it has one, at the `|`/`>` header of a block scalar, on the `-` line of an
//! empty entry, and otherwise at its content. yaml-rust2 marks an event at its content token
//! instead, so the first three are looked up in the text or its tokens (see [`Start`]).

use std::cell::OnceCell;
use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, Scanner, TScalarStyle, Token, TokenType};

/// Where a list is: the document's root, or the value of a key of the root mapping.
#[derive(Clone, Copy)]
pub(crate) enum List<'k> {
    Root,
    Key(&'k str),
}

/// The first document of a text as a tree of nodes with their positions.
///
/// It is only ever built from text that serde_yaml_ng has already parsed, so a parse error just
/// ends the tree: what was read before it is kept. yaml-rust2 follows YAML 1.2 more strictly than
/// libyaml, though: text that libyaml accepts but it rejects (say a flow collection whose lines are
/// indented no deeper than its parent block) yields the nodes before the error only, and callers
/// fall back to the line of an enclosing node.
pub(crate) struct Document<'t> {
    text: &'t str,
    root: Option<Node>,
    /// Scanned only if a node's line needs it (see [`Start`]).
    tokens: OnceCell<TokenLines>,
}

/// A node: where its event was marked, how to find its start from there, and its children.
pub(crate) struct Node {
    mark: Marker,
    start: Start,
    kind: Kind,
}

enum Kind {
    /// A scalar's text is kept to recognise mapping keys.
    Scalar(String),
    Alias,
    Sequence(Vec<Node>),
    Mapping(Vec<(Node, Node)>),
}

impl<'t> Document<'t> {
    pub(crate) fn parse(text: &'t str) -> Document<'t> {
        let mut builder = Builder { open: Vec::new(), root: None };
        // Only the first document is read. A parse error ends the events; the collections still
        // open then are closed with what they hold.
        let _ = Parser::new_from_str(text).load(&mut builder, false);
        while let Some(open) = builder.open.pop() {
            builder.add(open.node);
        }
        Document { text, root: builder.root, tokens: OnceCell::new() }
    }

    /// The entries of `list`; none if it is absent or not a sequence.
    pub(crate) fn list(&self, list: List) -> &[Node] {
        let node = match list {
            List::Root => self.root.as_ref(),
            List::Key(key) => self.root.as_ref().and_then(|root| root.get(key)),
        };
        node.map_or(&[], Node::items)
    }

    /// The lines of the entries of `list`, in order.
    pub(crate) fn entry_lines(&self, list: List) -> Vec<usize> {
        self.list(list).iter().map(|node| self.line(node)).collect()
    }

    /// The 1-based line where `node` starts. yaml-rust2's lines are 1-based.
    pub(crate) fn line(&self, node: &Node) -> usize {
        let text = self.text;
        let tokens = || self.tokens.get_or_init(|| TokenLines::scan(text));
        let index = node.mark.index();
        let found = match node.start {
            Start::Content => None,
            Start::BlockScalar => {
                let previous = tokens().before_block_scalar.get(&index);
                previous.and_then(|&(line, col)| first_filled_line(text, line, col))
            }
            Start::Properties => tokens().first_property.get(&index).copied(),
            Start::Empty => tokens().previous.get(&index).copied(),
        };
        found.unwrap_or(node.mark.line())
    }
}

impl Node {
    /// The value of `key` in this mapping; `None` if this is not a mapping or lacks the key.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        self.pairs().iter().find(|(k, _)| matches!(&k.kind, Kind::Scalar(s) if s == key)).map(|(_, v)| v)
    }

    /// The entries of this sequence; none if it is not one.
    pub(crate) fn items(&self) -> &[Node] {
        match &self.kind {
            Kind::Sequence(items) => items,
            _ => &[],
        }
    }

    /// The keys and values of this mapping, in order; none if it is not one.
    pub(crate) fn pairs(&self) -> &[(Node, Node)] {
        match &self.kind {
            Kind::Mapping(pairs) => pairs,
            _ => &[],
        }
    }
}

/// Builds the tree from the parser's events.
struct Builder {
    open: Vec<Open>,
    /// Set when the first document's root node is complete: later events are ignored.
    root: Option<Node>,
}

/// A collection whose end has not been seen yet.
struct Open {
    node: Node,
    /// In a mapping, a key waiting for its value.
    key: Option<Node>,
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

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.root.is_some() {
            return;
        }
        let properties = |anchor: usize, tag: bool| {
            if anchor != 0 || tag {
                Start::Properties
            } else {
                Start::Content
            }
        };
        let (kind, start) = match event {
            Event::Scalar(value, style, anchor, tag) => {
                let start = match (properties(anchor, tag.is_some()), style) {
                    (Start::Content, TScalarStyle::Literal | TScalarStyle::Folded) => Start::BlockScalar,
                    (Start::Content, TScalarStyle::Plain) if value.is_empty() => Start::Empty,
                    (start, _) => start,
                };
                (Kind::Scalar(value), start)
            }
            Event::Alias(_) => (Kind::Alias, Start::Content),
            Event::SequenceStart(anchor, tag) => (Kind::Sequence(Vec::new()), properties(anchor, tag.is_some())),
            Event::MappingStart(anchor, tag) => (Kind::Mapping(Vec::new()), properties(anchor, tag.is_some())),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(open) = self.open.pop() {
                    self.add(open.node);
                }
                return;
            }
            Event::StreamStart | Event::DocumentStart | Event::Nothing | Event::StreamEnd | Event::DocumentEnd => {
                return
            }
        };
        let node = Node { mark, start, kind };
        match node.kind {
            Kind::Sequence(_) | Kind::Mapping(_) => self.open.push(Open { node, key: None }),
            Kind::Scalar(_) | Kind::Alias => self.add(node),
        }
    }
}

impl Builder {
    /// Adds a complete node to the collection it is in, or makes it the root.
    fn add(&mut self, node: Node) {
        let Some(parent) = self.open.last_mut() else {
            self.root = Some(node);
            return;
        };
        match &mut parent.node.kind {
            Kind::Sequence(items) => items.push(node),
            Kind::Mapping(pairs) => match parent.key.take() {
                Some(key) => pairs.push((key, node)),
                None => parent.key = Some(node),
            },
            Kind::Scalar(_) | Kind::Alias => unreachable!("only collections are open"),
        }
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

    fn entry_lines(text: &str, list: List) -> Vec<usize> {
        Document::parse(text).entry_lines(list)
    }

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
    fn nested_nodes() {
        let text = "- name: x\n  dmap:\n    k1: [a,\n      b]\n    # c\n    k2:\n    - c\n";
        let document = Document::parse(text);
        let dmap = document.list(List::Root)[0].get("dmap").unwrap();
        let lines = |nodes: &[Node]| nodes.iter().map(|n| document.line(n)).collect::<Vec<_>>();
        let keys: Vec<_> = dmap.pairs().iter().map(|(k, _)| document.line(k)).collect();
        assert_eq!(keys, [3, 6]);
        assert_eq!(lines(dmap.get("k1").unwrap().items()), [3, 4]);
        assert_eq!(lines(dmap.get("k2").unwrap().items()), [7]);
        assert!(dmap.get("k3").is_none() && dmap.items().is_empty());
    }

    #[test]
    fn broken_or_empty_text() {
        assert_eq!(entry_lines("", List::Root), [] as [usize; 0]);
        assert_eq!(entry_lines("- a\n- [b\n", List::Root), [1, 2]);
        assert_eq!(entry_lines("images: x\n", List::Key("images")), [] as [usize; 0]);
    }
}
