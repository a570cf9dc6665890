//! Adding a digest and its tags to a thin directory's `images.yaml` by editing its text, so that
//! the file's order, comments, blank lines, indentation and quoting are kept.
//!
//! The positions come from [`Document`] (the same lines the loader reports); the new lines copy
//! the indentation and quoting of the lines around them. Block style is edited; a flow-style
//! root list, image entry or `dmap` is refused (edit those by hand). Every result is read back
//! with the loader's schema and checked to hold what was added, so a layout this does not
//! understand is refused rather than written wrong.

use std::fmt;
use std::path::Path;

use ferry_oci::{Digest, RepoName, Tag};

use crate::lines::{Document, List, Node};
use crate::schema::ImageEntry;

/// Why a digest or tag could not be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditError {
    /// The tag is already bound to another digest of the image: adding it would move it.
    TagBound {
        /// The 1-based line of the tag in the file.
        line: usize,
        /// The tag.
        tag: String,
        /// The digest the file binds it to.
        digest: String,
    },
    /// The file's layout at `line` cannot be edited safely (flow style, anchors, a parse error).
    Unsupported {
        /// The 1-based line at fault.
        line: usize,
        /// What is in the way.
        message: String,
    },
}

impl EditError {
    /// The 1-based line the error is about.
    pub fn line(&self) -> usize {
        match self {
            EditError::TagBound { line, .. } | EditError::Unsupported { line, .. } => *line,
        }
    }
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EditError::TagBound { tag, digest, .. } => {
                write!(f, "tag {tag} is already bound to {digest}; a tag is never moved")
            }
            EditError::Unsupported { message, .. } => write!(f, "{message}; edit this by hand"),
        }
    }
}

impl std::error::Error for EditError {}

fn unsupported(line: usize, message: impl Into<String>) -> EditError {
    EditError::Unsupported { line, message: message.into() }
}

/// Adds `digest` with `tags` to image `image` of the `images.yaml` text `text` and returns the new
/// text. What is already there is left alone: if the digest already has every tag, the text is
/// returned unchanged. A tag bound to another digest of the image is refused.
///
/// Where it goes: a new tag after the digest's last tag; a new digest after the image's last
/// digest; a new image at the end of the file, or, when the image names are sorted, before the
/// first name after it (and before the comments just above that entry).
pub fn add_image_tags(text: &str, image: &RepoName, digest: &Digest, tags: &[Tag]) -> Result<String, EditError> {
    let entries = read_entries(text)?;
    let document = Document::parse(text);
    let nodes = document.list(List::Root);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let style = Style::of_file(&lines, &document, nodes);

    let mut present: Vec<&str> = Vec::new();
    let mut found: Option<(usize, usize)> = None;
    let mut first_entry: Option<usize> = None;
    for (i, entry) in entries.iter().enumerate() {
        if entry.name.value.as_ref().ok() != Some(image) {
            continue;
        }
        first_entry.get_or_insert(i);
        let pairs = nodes.get(i).and_then(|n| n.get("dmap")).map_or(&[][..], Node::pairs);
        for (k, (d, entry_tags)) in entry.dmap.0.iter().enumerate() {
            let same = d.value.as_ref().ok() == Some(digest);
            if same {
                found.get_or_insert((i, k));
            }
            for (j, t) in entry_tags.iter().enumerate() {
                if !tags.iter().any(|tag| tag.as_str() == t.text) {
                    continue;
                }
                if same {
                    present.push(&t.text);
                } else {
                    let line = pairs.get(k).and_then(|(_, v)| v.items().get(j)).map_or(1, |n| document.line(n));
                    return Err(EditError::TagBound { line, tag: t.text.clone(), digest: d.text.clone() });
                }
            }
        }
    }
    let mut missing: Vec<&Tag> = Vec::new();
    for tag in tags {
        if !present.contains(&tag.as_str()) && !missing.contains(&tag) {
            missing.push(tag);
        }
    }
    if found.is_some() && missing.is_empty() {
        return Ok(text.to_string());
    }

    let mut edit = Edit { lines: lines.iter().map(|l| l.to_string()).collect(), style };
    match (found, first_entry) {
        (Some((i, k)), _) => {
            let (key, value) = &nodes[i].get("dmap").expect("a found digest has a dmap").pairs()[k];
            edit.add_tags(document.line(key), value.items().last().map(|n| document.line(n)), &missing)?;
        }
        (None, Some(i)) => edit.add_digest(&document, &nodes[i], digest, &missing)?,
        (None, None) => {
            let names: Vec<&str> = entries.iter().map(|e| e.name.text.as_str()).collect();
            let entry_lines: Vec<usize> = nodes.iter().map(|n| dash_line(&edit.lines, document.line(n))).collect();
            edit.add_image(&names, &entry_lines, image, digest, &missing)?;
        }
    }
    let result = edit.lines.concat();
    check(&result, image, digest, tags)?;
    Ok(result)
}

fn read_entries(text: &str) -> Result<Vec<ImageEntry>, EditError> {
    crate::parse::<Vec<ImageEntry>>(Path::new("images.yaml"), text)
        .map_err(|e| unsupported(e.line.unwrap_or(1), format!("cannot read the file: {}", e.message)))
}

/// Reads the result back and checks that the image has the digest with every tag.
fn check(text: &str, image: &RepoName, digest: &Digest, tags: &[Tag]) -> Result<(), EditError> {
    let entries = read_entries(text)?;
    let has = |tag: &Tag| {
        entries.iter().filter(|e| e.name.value.as_ref().ok() == Some(image)).any(|e| {
            e.dmap.0.iter().any(|(d, ts)| {
                d.value.as_ref().ok() == Some(digest) && ts.iter().any(|t| t.value.as_ref().ok() == Some(tag))
            })
        })
    };
    let has_digest = entries
        .iter()
        .filter(|e| e.name.value.as_ref().ok() == Some(image))
        .any(|e| e.dmap.0.iter().any(|(d, _)| d.value.as_ref().ok() == Some(digest)));
    if has_digest && tags.iter().all(has) {
        Ok(())
    } else {
        Err(unsupported(1, "the file's layout was not understood (the edit did not read back)"))
    }
}

/// How the file writes things, taken from its first lines that show it.
#[derive(Clone, Copy)]
struct Style {
    /// Quote of digest keys: `"`, `'` or none.
    key_quote: Option<char>,
    /// Quote of tags.
    tag_quote: Option<char>,
    /// Quote of image names.
    name_quote: Option<char>,
    /// Tags as a block list (`- v1` lines) rather than `[v1]`.
    block_tags: bool,
    /// Column of the `-` of an entry.
    dash_col: usize,
    /// Column of `name:` / `dmap:` in an entry.
    entry_col: usize,
    /// Column of the digest keys.
    key_col: usize,
    /// Column of the `-` of a block tag list.
    item_col: usize,
    /// `\n` or `\r\n`.
    newline: &'static str,
}

fn quote_of(c: Option<char>) -> Option<char> {
    c.filter(|c| matches!(c, '"' | '\''))
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// The line of the `-` that starts the list item whose mapping begins on `line`: `line` itself
/// (`- name: x`), or the line of a `-` standing alone above it (`-` then `  name: x`).
fn dash_line(lines: &[impl AsRef<str>], line: usize) -> usize {
    let text = |n: usize| lines.get(n - 1).map_or("", AsRef::as_ref);
    if text(line).trim_start().starts_with('-') {
        return line;
    }
    match (1..line).rev().find(|&n| !filler(text(n))) {
        Some(n) if strip_comment(text(n).trim()).trim_end() == "-" => n,
        _ => line,
    }
}

/// A blank or comment-only line.
fn filler(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// The text after `key:` on `line`, without the comment, trimmed.
fn after_colon(line: &str, key_end: usize) -> &str {
    let rest = line[key_end..].trim_start();
    let rest = rest.strip_prefix(':').unwrap_or(rest);
    strip_comment(rest).trim()
}

fn strip_comment(s: &str) -> &str {
    // Tags, digests and names never hold `#`, so the first ` #` starts a comment.
    match s.find(" #") {
        Some(i) => &s[..i],
        None if s.trim_start().starts_with('#') => "",
        None => s,
    }
}

/// The end (byte offset) of the key that starts at `col` of `line`, quotes included.
fn key_end(line: &str, col: usize) -> usize {
    let rest = &line[col..];
    match quote_of(rest.chars().next()) {
        Some(q) => col + 1 + rest[1..].find(q).map_or(rest.len() - 1, |i| i + 1),
        None => col + rest.find(": ").or_else(|| rest.trim_end().strip_suffix(':').map(str::len)).unwrap_or(rest.len()),
    }
}

impl Style {
    fn of_file(lines: &[&str], document: &Document, nodes: &[Node]) -> Style {
        let newline = if lines.first().is_some_and(|l| l.ends_with("\r\n")) { "\r\n" } else { "\n" };
        let mut style = Style {
            key_quote: Some('"'),
            tag_quote: Some('"'),
            name_quote: None,
            block_tags: false,
            dash_col: 0,
            entry_col: 2,
            key_col: 4,
            item_col: 4,
            newline,
        };
        let line = |n: &Node| lines.get(document.line(n) - 1).copied().unwrap_or("");
        if let Some(first) = nodes.first() {
            let key_line = document.line(first);
            let l = lines.get(dash_line(lines, key_line) - 1).copied().unwrap_or("");
            style.dash_col = indent(l);
            if let Some(rest) = l[style.dash_col..].strip_prefix('-') {
                style.entry_col = match strip_comment(rest).trim() {
                    // `-` alone: the keys start on the next line.
                    "" => indent(line(first)),
                    _ => style.dash_col + 1 + indent(rest),
                };
            }
            if let Some(name) = first.get("name") {
                let nl = line(name);
                let at = nl.find("name:").map(|i| i + 5).unwrap_or(nl.len());
                style.name_quote = quote_of(nl[at..].trim_start().chars().next());
            }
        }
        style.key_col = style.entry_col + 2;
        style.item_col = style.key_col;
        let mut have_key = false;
        let mut have_tags = false;
        for (key, value) in nodes.iter().filter_map(|n| n.get("dmap")).flat_map(Node::pairs) {
            let kl = line(key);
            if !have_key {
                have_key = true;
                style.key_col = indent(kl);
                style.item_col = style.key_col;
                style.key_quote = quote_of(kl[style.key_col..].chars().next());
            }
            if let Some(item) = value.items().first() {
                let il = line(item);
                let rest = after_colon(kl, key_end(kl, indent(kl)));
                if let Some(flow) = rest.strip_prefix('[') {
                    style.tag_quote = quote_of(flow.trim_start().chars().next());
                    style.block_tags = false;
                } else if il.trim_start().starts_with('-') {
                    style.block_tags = true;
                    style.item_col = style.key_col + indent(il).saturating_sub(indent(kl));
                    style.tag_quote = quote_of(il.trim_start()[1..].trim_start().chars().next());
                }
                have_tags = true;
            }
            if have_tags {
                break;
            }
        }
        style
    }

    fn tag(&self, tag: &str) -> String {
        // A plain scalar YAML 1.1 reads as a bool or null is quoted even in a plain file.
        let special = matches!(
            tag.to_ascii_lowercase().as_str(),
            "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
        match self.tag_quote {
            Some(q) => format!("{q}{tag}{q}"),
            None if special => format!("\"{tag}\""),
            None => tag.to_string(),
        }
    }

    fn key(&self, digest: &Digest) -> String {
        match self.key_quote {
            Some(q) => format!("{q}{digest}{q}"),
            None => digest.to_string(),
        }
    }

    /// The lines of a new digest key with its tags.
    fn digest_lines(&self, key_col: usize, item_col: usize, digest: &Digest, tags: &[&Tag]) -> Vec<String> {
        let nl = self.newline;
        let key = format!("{}{}:", " ".repeat(key_col), self.key(digest));
        if self.block_tags {
            let mut out = vec![format!("{key}{nl}")];
            out.extend(tags.iter().map(|t| format!("{}- {}{nl}", " ".repeat(item_col), self.tag(t.as_str()))));
            out
        } else {
            vec![format!("{key} [{}]{nl}", self.tag_list(tags))]
        }
    }

    fn tag_list(&self, tags: &[&Tag]) -> String {
        tags.iter().map(|t| self.tag(t.as_str())).collect::<Vec<_>>().join(", ")
    }
}

/// The file as lines (each with its line end), edited in place.
struct Edit {
    lines: Vec<String>,
    style: Style,
}

impl Edit {
    /// The 1-based line of the last line of the block that starts on 1-based `start` at column
    /// `col`: the following lines indented deeper (and, when `dash` is set, `-` entries at `col`),
    /// with the blank and comment lines between them but not after them.
    fn block_end(&self, start: usize, col: usize, dash: bool) -> usize {
        let mut last = start;
        for (i, line) in self.lines.iter().enumerate().skip(start) {
            if filler(line) {
                continue;
            }
            let at = indent(line);
            let dash_here = dash && at == col && line.trim_start().starts_with('-');
            if at > col || dash_here {
                last = i + 1;
            } else {
                break;
            }
        }
        last
    }

    fn insert(&mut self, after: usize, new: Vec<String>) {
        // A last line without its line end gets one first.
        if after == self.lines.len() {
            if let Some(last) = self.lines.last_mut() {
                if !last.ends_with('\n') {
                    last.push_str(self.style.newline);
                }
            }
        }
        self.lines.splice(after..after, new);
    }

    /// Adds `tags` to the value of the digest key on line `key_line`, whose last tag (if any) is
    /// on `last_item`.
    fn add_tags(&mut self, key_line: usize, last_item: Option<usize>, tags: &[&Tag]) -> Result<(), EditError> {
        let kl = self.lines[key_line - 1].clone();
        let end = key_end(&kl, indent(&kl));
        let colon = end + kl[end..].find(':').ok_or_else(|| unsupported(key_line, "no `:` after the digest"))?;
        let rest = strip_comment(&kl[colon + 1..]).trim();
        let list = self.style.tag_list(tags);
        if rest.is_empty() {
            match last_item {
                // A block list: new items after the last, as it is written.
                Some(item) => {
                    let il = self.lines[item - 1].clone();
                    let dash = indent(&il);
                    let Some(body) = il[dash..].strip_prefix('-') else {
                        return Err(unsupported(item, "a tag list this cannot edit"));
                    };
                    let mut style = self.style;
                    style.tag_quote = quote_of(body.trim_start().chars().next());
                    let nl = self.style.newline;
                    let new = tags.iter().map(|t| format!("{}- {}{nl}", " ".repeat(dash), style.tag(t.as_str())));
                    self.insert(item, new.collect());
                }
                // No value (null): give it a flow list.
                None => self.lines[key_line - 1].insert_str(colon + 1, &format!(" [{list}]")),
            }
            return Ok(());
        }
        if !rest.starts_with('[') {
            return Err(unsupported(key_line, "the digest's tags are not a list this can edit"));
        }
        // A flow list: insert before its `]`, which may be on a later line.
        let from = colon + 1 + kl[colon + 1..].find('[').expect("the value starts with [");
        let close_line = (key_line - 1..self.lines.len())
            .find(|&i| self.lines[i][if i == key_line - 1 { from } else { 0 }..].contains(']'))
            .ok_or_else(|| unsupported(key_line, "no `]` closes the tag list"))?;
        let line = &mut self.lines[close_line];
        let start = if close_line == key_line - 1 { from } else { 0 };
        let close = start + line[start..].find(']').expect("found above");
        let before = line[..close].trim_end_matches([' ', '\t']);
        let empty = close_line == key_line - 1 && before.len() == from + 1;
        if empty {
            line.replace_range(from + 1..close, &list);
        } else {
            let mut style = self.style;
            let first = kl[from + 1..].trim_start().chars().next();
            if first.is_some_and(|c| c != ']') {
                style.tag_quote = quote_of(first);
            }
            let list = style.tag_list(tags);
            let at = before.len();
            line.insert_str(at, &format!(", {list}"));
        }
        Ok(())
    }

    /// Adds a new digest key (with `tags`) to the dmap of entry `entry`.
    fn add_digest(
        &mut self,
        document: &Document,
        entry: &Node,
        digest: &Digest,
        tags: &[&Tag],
    ) -> Result<(), EditError> {
        let first_key_line = document.line(entry);
        let entry_line = dash_line(&self.lines, first_key_line);
        let el = self.lines[entry_line - 1].clone();
        let dash = indent(&el);
        if el[dash..].strip_prefix('-').is_none_or(|rest| rest.trim_start().starts_with('{')) {
            return Err(unsupported(entry_line, "the image entry is in flow style"));
        }
        let entry_col = if entry_line == first_key_line {
            dash + 1 + indent(&el[dash + 1..])
        } else {
            indent(&self.lines[first_key_line - 1])
        };
        let dmap_key = entry.pairs().iter().find(|(k, _)| {
            let l = &self.lines[document.line(k) - 1];
            l[indent(l)..].trim_start_matches(['-', ' ']).starts_with("dmap")
        });
        let pairs = entry.get("dmap").map_or(&[][..], Node::pairs);
        if let Some((last_key, _)) = pairs.last() {
            let first_line = document.line(&pairs[0].0);
            let dmap_line = dmap_key.map_or(first_line, |(k, _)| document.line(k));
            let fl = &self.lines[first_line - 1];
            if first_line == dmap_line || fl[indent(fl)..].starts_with('{') {
                return Err(unsupported(dmap_line, "the dmap is in flow style"));
            }
            let key_col = indent(fl);
            let last_line = document.line(last_key);
            let end = self.block_end(last_line, key_col, true);
            // The style of the digest before it.
            let mut style = self.style;
            let mut item_col = self.item_col_near(key_col);
            let (_, last_value) = pairs.last().expect("not empty");
            if let Some(item) = last_value.items().first() {
                let kl = &self.lines[last_line - 1];
                let il = &self.lines[document.line(item) - 1];
                let rest = after_colon(kl, key_end(kl, key_col));
                if let Some(flow) = rest.strip_prefix('[') {
                    style.block_tags = false;
                    style.tag_quote = quote_of(flow.trim_start().chars().next());
                } else if il.trim_start().starts_with('-') {
                    style.block_tags = true;
                    item_col = indent(il);
                    style.tag_quote = quote_of(il.trim_start()[1..].trim_start().chars().next());
                }
            }
            let new = style.digest_lines(key_col, item_col, digest, tags);
            self.insert(end, new);
            return Ok(());
        }
        let key_col = entry_col + self.style.key_col.saturating_sub(self.style.entry_col).max(1);
        let item_col = key_col + self.style.item_col.saturating_sub(self.style.key_col);
        let new = self.style.digest_lines(key_col, item_col, digest, tags);
        match dmap_key {
            Some((k, _)) => {
                let line_no = document.line(k);
                let line = &mut self.lines[line_no - 1];
                let end = key_end(line, indent(line).max(entry_col));
                let rest = strip_comment(&line[end + 1..]).trim().to_string();
                match rest.as_str() {
                    "" | "~" | "null" => {}
                    "{}" => {
                        let at = end + 1 + line[end + 1..].find("{}").expect("seen above");
                        let from = line[..at].trim_end_matches(' ').len();
                        line.replace_range(from..at + 2, "");
                    }
                    _ => return Err(unsupported(line_no, "the dmap is not a block mapping")),
                }
                if rest == "~" || rest == "null" {
                    let at = end + 1 + line[end + 1..].find(rest.as_str()).expect("seen above");
                    let from = line[..at].trim_end_matches(' ').len();
                    line.replace_range(from..at + rest.len(), "");
                }
                self.insert(line_no, new);
            }
            None => {
                let end = self.block_end(entry_line, dash, false);
                let mut lines = vec![format!("{}dmap:{}", " ".repeat(entry_col), self.style.newline)];
                lines.extend(new);
                self.insert(end, lines);
            }
        }
        Ok(())
    }

    /// The column of block tag items under keys at `key_col`, as the file writes them.
    fn item_col_near(&self, key_col: usize) -> usize {
        key_col + self.style.item_col.saturating_sub(self.style.key_col)
    }

    /// Adds a new image entry: at the end, or in sorted position when `names` are sorted.
    fn add_image(
        &mut self,
        names: &[&str],
        entry_lines: &[usize],
        image: &RepoName,
        digest: &Digest,
        tags: &[&Tag],
    ) -> Result<(), EditError> {
        if let Some(i) = self.lines.iter().position(|l| !filler(l)) {
            if self.lines[i].trim_start().starts_with('[') || entry_lines.is_empty() {
                return Err(unsupported(i + 1, "the image list is not a block list"));
            }
        }
        let Some(&last) = entry_lines.last() else {
            // Empty, or only comments: the entry goes at the end.
            let s = self.style;
            let nl = s.newline;
            let mut new = vec![format!("- name: {image}{nl}"), format!("  dmap:{nl}")];
            new.extend(s.digest_lines(4, 4, digest, tags));
            let end = self.lines.len();
            self.insert(end, new);
            return Ok(());
        };
        let s = self.style;
        let nl = s.newline;
        let name = match s.name_quote {
            Some(q) => format!("{q}{image}{q}"),
            None => image.to_string(),
        };
        let mut new = vec![
            format!(
                "{}-{}name: {name}{nl}",
                " ".repeat(s.dash_col),
                " ".repeat(s.entry_col.saturating_sub(s.dash_col + 1).max(1))
            ),
            format!("{}dmap:{nl}", " ".repeat(s.entry_col)),
        ];
        new.extend(s.digest_lines(s.key_col, s.item_col, digest, tags));
        let sorted = names.len() >= 2 && names.windows(2).all(|w| w[0] <= w[1]);
        let before = if sorted { names.iter().position(|n| *n > image.as_str()) } else { None };
        // Entries separated by blank lines get one too.
        let start_of = |lines: &[String], entry_line: usize| {
            let mut at = entry_line - 1;
            while at > 0 && lines[at - 1].trim_start().starts_with('#') {
                at -= 1;
            }
            at
        };
        let separated = entry_lines.len() >= 2 && {
            let at = start_of(&self.lines, entry_lines[1]);
            at > 0 && self.lines[at - 1].trim().is_empty()
        };
        match before {
            Some(i) => {
                let at = start_of(&self.lines, entry_lines[i]);
                if separated {
                    new.push(nl.to_string());
                }
                self.insert(at, new);
            }
            None => {
                let dash = indent(&self.lines[last - 1]);
                let end = self.block_end(last, dash, false);
                if separated {
                    new.insert(0, nl.to_string());
                }
                self.insert(end, new);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
    const D: &str = "sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";

    /// A hand-formatted file: comments, blank lines between entries, quoted keys, flow and block
    /// tag lists, names sorted.
    fn input() -> String {
        format!(
            "# Images of project foo.\n\
             # Reviewed by foo-approvers.\n\
             \n\
             # The agent.\n\
             - name: agent\n  dmap:\n    \"{A}\": [\"v1.0\", \"v1\"] # first release\n    # the next one\n    \"{B}\": [\"v1.1\"]\n\
             \n\
             - name: tools/cli   # the command line\n  dmap:\n    \"{C}\":\n    - \"v2\"\n"
        )
    }

    fn add(text: &str, image: &str, digest: &str, tags: &[&str]) -> Result<String, EditError> {
        let tags: Vec<Tag> = tags.iter().map(|t| t.parse().unwrap()).collect();
        add_image_tags(text, &image.parse().unwrap(), &digest.parse().unwrap(), &tags)
    }

    /// Adds, compares byte for byte, and checks that adding again changes nothing and that the
    /// result loads.
    fn golden(image: &str, digest: &str, tags: &[&str], expected: &str) {
        let out = add(&input(), image, digest, tags).unwrap();
        assert_eq!(out, expected, "\n--- got ---\n{out}\n--- expected ---\n{expected}");
        assert_eq!(add(&out, image, digest, tags).unwrap(), out, "a second add changes nothing");
        let mut errors = Vec::new();
        let entries: Vec<ImageEntry> = crate::parse(Path::new("images.yaml"), &out).unwrap();
        crate::images(Path::new("images.yaml"), &out, List::Root, entries, false, &mut errors, &mut Vec::new());
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn a_tag_to_an_existing_digest_in_a_flow_list() {
        let expected = input().replace("[\"v1.0\", \"v1\"] # first", "[\"v1.0\", \"v1\", \"latest\"] # first");
        golden("agent", A, &["v1", "latest"], &expected);
    }

    #[test]
    fn a_tag_to_an_existing_digest_in_a_block_list() {
        let expected = input().replace("    - \"v2\"\n", "    - \"v2\"\n    - \"v2.0\"\n");
        golden("tools/cli", C, &["v2.0"], &expected);
    }

    #[test]
    fn a_new_digest_to_an_existing_image() {
        let expected = input().replace(
            &format!("    \"{B}\": [\"v1.1\"]\n"),
            &format!("    \"{B}\": [\"v1.1\"]\n    \"{D}\": [\"v1.2\", \"stable\"]\n"),
        );
        golden("agent", D, &["v1.2", "stable"], &expected);
    }

    #[test]
    fn a_new_image_in_sorted_position() {
        let expected = input().replace(
            "- name: tools/cli",
            &format!("- name: server\n  dmap:\n    \"{D}\": [\"v3\"]\n\n- name: tools/cli"),
        );
        golden("server", D, &["v3"], &expected);
        // Before the comments just above the entry it precedes.
        let expected = input()
            .replace("# The agent.\n", &format!("- name: aaa\n  dmap:\n    \"{D}\": [\"v3\"]\n\n# The agent.\n"));
        golden("aaa", D, &["v3"], &expected);
    }

    #[test]
    fn a_new_image_at_the_end_of_an_unsorted_file() {
        let text = format!("- name: b\n  dmap:\n    {A}: [x]\n- name: a\n  dmap:\n    {B}:\n      - y\n");
        let out = add(&text, "c", C, &["z"]).unwrap();
        assert_eq!(out, format!("{text}- name: c\n  dmap:\n    {C}: [z]\n"));
        // A new digest copies the block list of the file.
        let out = add(&text, "a", C, &["true"]).unwrap();
        assert_eq!(out, format!("{text}    {C}:\n      - \"true\"\n"));
    }

    #[test]
    fn empty_files_null_values_and_missing_dmaps() {
        let out = add("# nothing yet\n", "a", A, &["v1"]).unwrap();
        assert_eq!(out, format!("# nothing yet\n- name: a\n  dmap:\n    \"{A}\": [\"v1\"]\n"));
        let text = format!("- name: a\n  dmap:\n    \"{A}\":   # digest only\n- name: b\n");
        let out = add(&text, "a", A, &["v1"]).unwrap();
        assert_eq!(out, format!("- name: a\n  dmap:\n    \"{A}\": [\"v1\"]   # digest only\n- name: b\n"));
        let out = add(&text, "b", B, &["v2"]).unwrap();
        assert_eq!(out, format!("{text}  dmap:\n    \"{B}\": [\"v2\"]\n"));
        let text = "- name: a\n  dmap: {}\n";
        let out = add(text, "a", B, &["v2"]).unwrap();
        assert_eq!(out, format!("- name: a\n  dmap:\n    \"{B}\": [\"v2\"]\n"));
        let out = add(&format!("- name: a\n  dmap:\n    \"{A}\": []\n"), "a", A, &["v1"]).unwrap();
        assert_eq!(out, format!("- name: a\n  dmap:\n    \"{A}\": [\"v1\"]\n"));
    }

    #[test]
    fn a_dash_alone_on_its_line() {
        let text = format!("-\n  name: a\n  dmap:\n    {A}: [v1]\n-   # b\n  name: c\n  dmap:\n    {C}: [v1]\n");
        let out = add(&text, "a", B, &["v2"]).unwrap();
        assert_eq!(out, text.replace("[v1]\n-", &format!("[v1]\n    {B}: [v2]\n-")));
        let out = add(&text, "b", D, &["v3"]).unwrap();
        assert_eq!(out, text.replace("[v1]\n-", &format!("[v1]\n- name: b\n  dmap:\n    {D}: [v3]\n-")));
    }

    #[test]
    fn indentless_block_lists_and_trailing_comments() {
        let text = format!("- name: a\n  dmap:\n    {A}:  # c\n    - v1\n  # about b\n- name: b\n");
        let out = add(&text, "a", A, &["v2"]).unwrap();
        assert_eq!(out, text.replace("    - v1\n", "    - v1\n    - v2\n"));
        let out = add(&text, "a", B, &["v3"]).unwrap();
        assert_eq!(out, text.replace("    - v1\n", &format!("    - v1\n    {B}:\n    - v3\n")));
    }

    #[test]
    fn crlf_and_a_missing_last_newline_are_kept() {
        let text = format!("- name: a\r\n  dmap:\r\n    '{A}': ['v1']");
        let out = add(&text, "b", B, &["v2"]).unwrap();
        assert_eq!(out, format!("{text}\r\n- name: b\r\n  dmap:\r\n    '{B}': ['v2']\r\n"));
    }

    #[test]
    fn a_tag_bound_to_another_digest_is_refused() {
        let err = add(&input(), "agent", C, &["v2.0", "v1"]).unwrap_err();
        assert_eq!(err, EditError::TagBound { line: 7, tag: "v1".into(), digest: A.to_string() });
        // The same tag under another image is no conflict.
        assert!(add(&input(), "tools/cli", D, &["v1"]).is_ok());
    }

    #[test]
    fn flow_style_is_refused_not_mangled() {
        let text = format!("[{{name: a, dmap: {{\"{A}\": [v1]}}}}]\n");
        assert!(matches!(add(&text, "b", B, &["v2"]), Err(EditError::Unsupported { line: 1, .. })));
        let text = format!("- {{name: a, dmap: {{\"{A}\": [v1]}}}}\n");
        assert!(matches!(add(&text, "a", B, &["v2"]), Err(EditError::Unsupported { line: 1, .. })));
        let text = format!("- name: a\n  dmap: {{\"{A}\": [v1]}}\n");
        assert!(matches!(add(&text, "a", B, &["v2"]), Err(EditError::Unsupported { line: 2, .. })));
    }
}
