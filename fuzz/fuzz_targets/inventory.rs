//! Mirror inventories (`sha256:<hex> [bytes]` / `/path [bytes]` lines): `ferry_store`'s parser and
//! writer, and `ferry serve`'s compact reader of the same format.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let store = ferry_store::Inventory::parse(text, "fuzz");
    let serve = ferry_serve::Inventory::parse(text, "fuzz");
    // Both readers accept and refuse the same texts.
    assert_eq!(store.is_ok(), serve.is_ok(), "store {store:?} serve {serve:?}");
    match store {
        Ok(inventory) => {
            let serve = serve.unwrap();
            assert_eq!(serve.blob_count(), inventory.blobs().count());
            assert_eq!(serve.file_count(), inventory.files().count());
            for digest in inventory.blobs() {
                assert!(serve.has_blob(digest));
            }
            for path in inventory.files() {
                assert!(serve.has_file(&ferry_oci::FilePath::parse(path).unwrap()));
            }
            // Written and read back, an inventory is the same; written again, the same text.
            let rendered = inventory.render();
            let again = ferry_store::Inventory::parse(&rendered, "rendered").expect("rendered inventory parses");
            assert_eq!(again, inventory);
            assert_eq!(again.render(), rendered);
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.starts_with("fuzz"), "error without its origin: {message}");
            assert_eq!(message, serve.unwrap_err().to_string());
        }
    }
});
