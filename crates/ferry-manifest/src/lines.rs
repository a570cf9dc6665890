//! The line of each entry of a YAML list.
//!
//! serde_yaml_ng reports a position only with an error, but cross-entry checks (two sources,
//! duplicate registries) and [`crate::Image::line`] need the line of entries that parsed fine. So
//! the text is walked a second time as libyaml events — the very parser serde_yaml_ng deserializes
//! from — which carry marks; lines are therefore exact whatever the YAML style (block or flow).

use std::marker::PhantomData;
use std::mem::MaybeUninit;

use unsafe_libyaml as sys;

/// Where the list is: the document's root, or the value of a key of the root mapping.
#[derive(Clone, Copy)]
pub(crate) enum List<'k> {
    Root,
    Key(&'k str),
}

/// 1-based start lines of the list's entries, in order. Empty if the list is absent; it is only
/// ever called on text that serde_yaml_ng has already parsed, so parse errors just end the walk.
pub(crate) fn entry_lines(text: &str, list: List) -> Vec<usize> {
    let Some(mut parser) = Parser::new(text) else { return Vec::new() };
    let mut lines = Vec::new();
    // For each open collection: is it a mapping, and how many child nodes it has had so far.
    let mut open: Vec<(bool, usize)> = Vec::new();
    // Depth (number of open collections) of the list's entries, once the list has started.
    let mut entries_at: Option<usize> = None;
    let mut after_wanted_key = false;
    while let Some(event) = parser.next() {
        let Event::Node { line, collection, scalar } = event else {
            open.pop();
            if entries_at == Some(open.len() + 1) {
                break;
            }
            continue;
        };
        let depth = open.len();
        if entries_at == Some(depth) {
            lines.push(line);
        }
        // Children of a mapping alternate key, value, key, value...
        let in_root_mapping_at = match open.last_mut() {
            Some((true, children)) if depth == 1 => {
                *children += 1;
                Some(*children - 1)
            }
            Some((_, children)) => {
                *children += 1;
                None
            }
            None => None,
        };
        let is_value = match in_root_mapping_at {
            Some(i) if i % 2 == 0 => {
                after_wanted_key = matches!(list, List::Key(k) if scalar.as_deref() == Some(k));
                false
            }
            Some(_) => true,
            None => false,
        };
        let starts_list = collection == Some(false)
            && match list {
                List::Root => depth == 0,
                List::Key(_) => is_value && after_wanted_key,
            };
        if starts_list {
            entries_at = Some(depth + 1);
        }
        if let Some(is_mapping) = collection {
            open.push((is_mapping, 0));
        }
    }
    lines
}

enum Event {
    /// A node begins: `collection` is `Some(is_mapping)` for a sequence or mapping, `None` for a
    /// scalar or alias; a scalar's text is kept to recognise mapping keys.
    Node { line: usize, collection: Option<bool>, scalar: Option<String> },
    /// A collection ends.
    End,
}

/// A libyaml parser over borrowed text.
struct Parser<'a> {
    // Boxed so libyaml's struct never moves after initialisation.
    sys: Box<MaybeUninit<sys::yaml_parser_t>>,
    _text: PhantomData<&'a str>,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Option<Self> {
        let mut sys = Box::new(MaybeUninit::<sys::yaml_parser_t>::uninit());
        // SAFETY: `initialize` fully initialises the struct (and frees what it allocated if it
        // fails); the input pointer stays valid for 'a, which `_text` ties the parser to.
        unsafe {
            if sys::yaml_parser_initialize(sys.as_mut_ptr()).fail {
                return None;
            }
            sys::yaml_parser_set_encoding(sys.as_mut_ptr(), sys::YAML_UTF8_ENCODING);
            sys::yaml_parser_set_input_string(sys.as_mut_ptr(), text.as_ptr(), text.len() as u64);
        }
        Some(Parser { sys, _text: PhantomData })
    }

    /// The next node or collection end; `None` at the end of the first document or on error.
    fn next(&mut self) -> Option<Event> {
        loop {
            let mut raw = MaybeUninit::<sys::yaml_event_t>::uninit();
            // SAFETY: the parser is initialised; a successful `parse` initialises the event, whose
            // union is read only in the variant its type names, and which is deleted exactly once.
            unsafe {
                if sys::yaml_parser_parse(self.sys.as_mut_ptr(), raw.as_mut_ptr()).fail {
                    return None;
                }
                let event = &*raw.as_ptr();
                let line = event.start_mark.line as usize + 1;
                let out = match event.type_ {
                    sys::YAML_SCALAR_EVENT => {
                        let s = event.data.scalar;
                        let bytes = std::slice::from_raw_parts(s.value, s.length as usize);
                        Some(Event::Node { line, collection: None, scalar: Some(String::from_utf8_lossy(bytes).into_owned()) })
                    }
                    sys::YAML_ALIAS_EVENT => Some(Event::Node { line, collection: None, scalar: None }),
                    sys::YAML_SEQUENCE_START_EVENT => Some(Event::Node { line, collection: Some(false), scalar: None }),
                    sys::YAML_MAPPING_START_EVENT => Some(Event::Node { line, collection: Some(true), scalar: None }),
                    sys::YAML_SEQUENCE_END_EVENT | sys::YAML_MAPPING_END_EVENT => Some(Event::End),
                    sys::YAML_STREAM_START_EVENT | sys::YAML_DOCUMENT_START_EVENT => None,
                    _ => {
                        sys::yaml_event_delete(raw.as_mut_ptr());
                        return None;
                    }
                };
                sys::yaml_event_delete(raw.as_mut_ptr());
                if out.is_some() {
                    return out;
                }
            }
        }
    }
}

impl Drop for Parser<'_> {
    fn drop(&mut self) {
        // SAFETY: the parser was initialised in `new` and is deleted once.
        unsafe { sys::yaml_parser_delete(self.sys.as_mut_ptr()) }
    }
}
