//! Properties of the inventory format (`sha256:<hex> [bytes]` and `/path [bytes]` lines): what
//! [`Inventory::render`] writes, [`Inventory::parse`] reads back unchanged, and no text panics
//! the parser (the fuzz target `inventory` in fuzz/ explores the same ground for longer).

use ferry_oci::Digest;
use ferry_store::inventory::{parse_sized_entries, Entry};
use ferry_store::Inventory;
use proptest::prelude::*;

fn file_path() -> impl Strategy<Value = String> {
    prop::collection::vec("[A-Za-z0-9_~+@=,-][A-Za-z0-9._~+@=,-]{0,12}", 1..5).prop_map(|s| format!("/{}", s.join("/")))
}

/// One inventory line: an entry, sometimes with a size, sometimes padded; or a comment or blank.
fn line() -> impl Strategy<Value = String> {
    let entry = prop_oneof![any::<[u8; 2]>().prop_map(|seed| Digest::of(&seed).to_string()), file_path()];
    let sized = (entry, prop::option::of(any::<u64>()), prop::sample::select(vec!["", " ", "\t", "  \t"])).prop_map(
        |(e, size, pad)| match size {
            Some(n) => format!("{pad}{e}{pad} {n}{pad}"),
            None => format!("{pad}{e}{pad}"),
        },
    );
    prop_oneof![8 => sized, 1 => "#[^\n\r]{0,20}", 1 => "[ \t]{0,3}"]
}

proptest! {
    #[test]
    fn render_then_parse_is_the_same_inventory(
        blobs in prop::collection::vec((any::<[u8; 2]>(), prop::option::of(any::<u64>())), 0..12),
        files in prop::collection::vec((file_path(), prop::option::of(any::<u64>())), 0..12),
    ) {
        let mut inventory = Inventory::new();
        for (seed, size) in blobs {
            inventory.insert_blob_sized(Digest::of(&seed), size);
        }
        for (path, size) in files {
            inventory.insert_file_sized(&path, size).unwrap();
        }
        let text = inventory.render();
        let parsed = Inventory::parse(&text, "rendered").unwrap();
        prop_assert_eq!(&parsed, &inventory);
        prop_assert_eq!(parsed.render(), text);
    }

    #[test]
    fn parsed_lines_are_each_entry_once(lines in prop::collection::vec(line(), 0..20), crlf in any::<bool>()) {
        let text = lines.join(if crlf { "\r\n" } else { "\n" });
        let inventory = Inventory::parse(&text, "generated").unwrap();
        let mut entries = Vec::new();
        parse_sized_entries(&text, "generated", |entry, size| entries.push((entry, size))).unwrap();
        prop_assert_eq!(entries.len(), lines.iter().filter(|l| { let t = l.trim(); !t.is_empty() && !t.starts_with('#') }).count());
        for (entry, size) in &entries {
            match entry {
                Entry::Blob(d) => {
                    prop_assert!(inventory.contains_blob(d));
                    // The last known size wins.
                    if size.is_some() {
                        let last = entries.iter().rev().find_map(|(e, s)| (e == entry && s.is_some()).then_some(*s)).flatten();
                        prop_assert_eq!(inventory.blob_size(d), last);
                    }
                }
                Entry::File(p) => prop_assert!(inventory.contains_file(p.as_str())),
            }
        }
        prop_assert_eq!(Inventory::parse(&inventory.render(), "rendered").unwrap(), inventory);
    }

    #[test]
    fn arbitrary_text_never_panics_and_reparses(text in "(sha256:[0-9a-f]{0,64}|/[a-z./ ]{0,10}|[0-9 \t#]{0,6}|[^\n]{0,10}|\r?\n){0,12}") {
        match Inventory::parse(&text, "arbitrary") {
            Ok(inventory) => {
                prop_assert_eq!(Inventory::parse(&inventory.render(), "rendered").unwrap(), inventory);
            }
            Err(e) => prop_assert!(e.to_string().starts_with("arbitrary")),
        }
    }
}
