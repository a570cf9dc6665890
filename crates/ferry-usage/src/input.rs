//! Reading logs: many files (plain or gzip, told apart by their first bytes) or standard input,
//! line by line through one reused buffer, so memory does not grow with the log.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::mirrors::Mirrors;
use crate::usage::{Options, Usage};
use crate::Error;

/// The files a `--logs` argument names: `-` (standard input), a path, or a path whose last
/// component has `*` or `?` (expanded here, sorted, for when the shell did not).
pub fn expand(pattern: &str) -> Result<Vec<PathBuf>, Error> {
    if pattern == "-" {
        return Ok(vec![PathBuf::from("-")]);
    }
    let path = Path::new(pattern);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !name.contains(['*', '?']) {
        return Ok(vec![path.to_path_buf()]);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let entries = std::fs::read_dir(&dir).map_err(|e| Error::Io(dir.display().to_string(), e))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(|n| wildcard(name.as_bytes(), n.as_bytes())))
        .map(|e| e.path())
        .collect();
    found.sort();
    if found.is_empty() {
        return Err(Error::Input(format!("--logs {pattern}: no file matches")));
    }
    Ok(found)
}

fn wildcard(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => wildcard(&p[1..], s) || (!s.is_empty() && wildcard(p, &s[1..])),
        (Some(b'?'), Some(_)) => wildcard(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => wildcard(&p[1..], &s[1..]),
        _ => false,
    }
}

/// Opens a log (`-` is standard input), decompressing gzip.
pub fn open(path: &Path) -> Result<Box<dyn BufRead>, Error> {
    let shown = path.display().to_string();
    let raw: Box<dyn Read> = if path == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(File::open(path).map_err(|e| Error::Io(shown.clone(), e))?)
    };
    let mut reader = BufReader::with_capacity(1 << 20, raw);
    let head = reader.fill_buf().map_err(|e| Error::Io(shown, e))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(BufReader::with_capacity(1 << 20, MultiGzDecoder::new(reader))))
    } else {
        Ok(Box::new(reader))
    }
}

/// Feeds every line of `reader` to `usage`; `origin` names it in errors. Lines that are not
/// UTF-8 count as malformed.
pub fn read_into(usage: &mut Usage<'_>, mut reader: impl BufRead, origin: &str) -> Result<(), Error> {
    let mut buf = Vec::with_capacity(4096);
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(|e| Error::Io(origin.to_string(), e))?;
        if n == 0 {
            return Ok(());
        }
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match std::str::from_utf8(line) {
            Ok(text) => usage.add_line(text),
            Err(_) => usage.add_line("\u{1}"),
        }
    }
}

/// Bytes handed to a counting thread at a time (whole lines).
const BLOCK: usize = 1 << 20;
/// The longest line read: an access-log line is a few hundred bytes (paths are at most 2 KiB).
const MAX_LINE: usize = 16 << 20;

/// Counts every line of `files` in order, on every core: one thread reads (and decompresses)
/// blocks of whole lines, the others count them, each into a [`Usage`] of its own, merged at the
/// end. At most `2 × threads` blocks are in flight, so memory stays bounded whatever the logs'
/// size.
pub fn count<'m>(files: &[PathBuf], mirrors: &'m Mirrors, options: &Options) -> Result<Usage<'m>, Error> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 16);
    let (send, receive) = std::sync::mpsc::sync_channel::<Vec<u8>>(threads * 2);
    let receive = std::sync::Mutex::new(receive);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let receive = &receive;
                scope.spawn(move || {
                    let mut usage = Usage::new(mirrors, options.clone());
                    loop {
                        let block = match receive.lock().expect("a worker panicked").recv() {
                            Ok(block) => block,
                            Err(_) => return usage,
                        };
                        for line in block.split(|&b| b == b'\n') {
                            let line = line.strip_suffix(b"\r").unwrap_or(line);
                            match std::str::from_utf8(line) {
                                Ok(text) => usage.add_line(text),
                                Err(_) => usage.add_line("\u{1}"),
                            }
                        }
                    }
                })
            })
            .collect();
        let read = (|| {
            for file in files {
                let shown = file.display().to_string();
                let mut reader = open(file)?;
                let mut carry: Vec<u8> = Vec::new();
                loop {
                    let mut block = std::mem::take(&mut carry);
                    block.reserve(BLOCK);
                    let start = block.len();
                    block.resize(start + BLOCK, 0);
                    let mut filled = start;
                    while filled < block.len() {
                        match reader.read(&mut block[filled..]) {
                            Ok(0) => break,
                            Ok(n) => filled += n,
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(Error::Io(shown, e)),
                        }
                    }
                    block.truncate(filled);
                    let end = filled == start;
                    if !end {
                        // Keep the unfinished last line for the next block.
                        if let Some(cut) = block.iter().rposition(|&b| b == b'\n') {
                            carry = block.split_off(cut + 1);
                            block.pop();
                        } else if filled < start + BLOCK {
                            carry = Vec::new();
                        } else if block.len() > MAX_LINE {
                            return Err(Error::Input(format!("{shown}: a line longer than {MAX_LINE} bytes")));
                        } else {
                            carry = block;
                            continue;
                        }
                    }
                    if !block.is_empty() && send.send(block).is_err() {
                        return Ok(());
                    }
                    if end {
                        break;
                    }
                }
            }
            Ok(())
        })();
        drop(send);
        let mut merged: Option<Usage<'m>> = None;
        for worker in workers {
            let usage = worker.join().expect("a counting thread panicked");
            match &mut merged {
                None => merged = Some(usage),
                Some(m) => m.merge(usage),
            }
        }
        read.map(|()| merged.expect("at least one thread"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_names() {
        assert!(wildcard(b"access-*.jsonl.gz", b"access-2026-11-28.jsonl.gz"));
        assert!(!wildcard(b"access-*.jsonl.gz", b"access-1.jsonl"));
        assert!(wildcard(b"a?c", b"abc"));
    }

    #[test]
    fn reads_plain_and_gzip_files_alike() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("access-1.jsonl");
        std::fs::write(&plain, "a\nb\n").unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"a\nb\n").unwrap();
        std::fs::write(dir.path().join("access-2.jsonl.gz"), gz.finish().unwrap()).unwrap();
        let files = expand(&format!("{}/access-*", dir.path().display())).unwrap();
        assert_eq!(files.len(), 2);
        for f in files {
            let mut text = String::new();
            open(&f).unwrap().read_to_string(&mut text).unwrap();
            assert_eq!(text, "a\nb\n");
        }
        assert!(expand(&format!("{}/none-*", dir.path().display())).is_err());
    }

    #[test]
    fn counting_on_every_core_counts_what_one_thread_counts() {
        let dir = tempfile::tempdir().unwrap();
        let line = |i: usize| {
            format!(
                r#"{{"timestamp":"2026-11-28T10:{:02}:00Z","target":"ferry_serve::access","fields":{{"method":"GET","path":"/v2/a/blobs/sha256:{i}","label":"l{}","status":307,"outcome":"upstream","mirror":""}}}}"#,
                i % 60,
                i % 7
            )
        };
        // Blocks cut lines anywhere: 40,000 lines of ~190 bytes span several 1 MiB blocks; the
        // second file has no final newline.
        let text: String = (0..40_000).map(|i| line(i) + "\n").collect();
        std::fs::write(dir.path().join("a"), &text).unwrap();
        std::fs::write(dir.path().join("b"), format!("garbage\n\n{}", line(7))).unwrap();
        let files = vec![dir.path().join("a"), dir.path().join("b")];
        let mirrors = Mirrors::new();
        let options = Options::default();
        let parallel = count(&files, &mirrors, &options).unwrap().finish(&crate::Prices::default());
        let mut serial = Usage::new(&mirrors, options.clone());
        for f in &files {
            read_into(&mut serial, open(f).unwrap(), "f").unwrap();
        }
        let serial = serial.finish(&crate::Prices::default());
        assert_eq!(parallel.lines, serial.lines);
        assert_eq!(parallel.lines.counted, 40_001);
        assert_eq!(parallel.lines.malformed, 1);
        let json = |r: &crate::Report| {
            let mut v = serde_json::to_value(r).unwrap();
            for table in ["by_location", "by_repository"] {
                v[table].as_array_mut().unwrap().sort_by_key(|x| x.to_string());
            }
            v
        };
        assert_eq!(json(&parallel), json(&serial));
    }
}
