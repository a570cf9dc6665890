//! The access log: one JSON line per request, written off the request path.
//!
//! Why not a `tracing` event: formatting one through `tracing-subscriber`'s JSON layer and writing
//! it to stdout unbuffered cost about as much CPU as answering the request (measured with
//! callgrind: half of the user-space instructions per request, plus a `write` system call per
//! line). Here a line is formatted straight into a reused buffer and appended to the logging
//! thread's own pending buffer; a writer thread takes every thread's pending lines and writes
//! each thread's batch in one `write` every [`FLUSH_INTERVAL`] (or as soon as one thread has
//! [`FLUSH_BYTES`] pending). Each serving thread appends to its own buffer, so the serving
//! threads never wait for each other (one shared buffer was a lock that bounced between cores
//! on every request). Lines of one thread keep their order; lines of different threads are
//! interleaved a batch at a time (each line carries its timestamp). The line has the shape
//! `tracing-subscriber` gives its JSON events (`timestamp`, `level`, `target`, `fields`), so the
//! other log lines on stdout read the same.
//!
//! If the output blocks (a full pipe), lines accumulate up to [`MAX_PENDING`] bytes per thread;
//! past that, lines are dropped and counted (`ferry_serve_access_log_dropped_total`), so a stuck
//! log never stops the redirects or grows memory without bound.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::Method;

use crate::decision::Reason;

/// Longest a line waits in memory before it is written.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Pending bytes (of one thread) that wake the writer early.
pub const FLUSH_BYTES: usize = 1024 * 1024;
/// Pending bytes (of one thread) past which its new lines are dropped (and counted).
pub const MAX_PENDING: usize = 8 * 1024 * 1024;

/// One request, as logged.
pub struct Entry<'a> {
    /// An HTTP method is a token, which never needs escaping.
    pub method: &'a Method,
    /// The request path as received, without the query (escaped when written).
    pub path: &'a str,
    /// The client address (case 12: from `X-Forwarded-For` when the peer is a trusted proxy).
    pub client: IpAddr,
    /// The TCP peer.
    pub peer: IpAddr,
    /// The client's location label; `None` when it has none.
    pub label: Option<&'a str>,
    /// The HTTP status answered.
    pub status: u16,
    /// One of the fixed outcome words (`Outcome::as_str`).
    pub outcome: &'static str,
    /// The chosen mirror's name (outcome `mirror` only).
    pub mirror: Option<&'a str>,
    /// The redirect target (redirects only). JSON-safe by construction (configured URLs refuse
    /// quotes, backslashes and control characters; the request parts in it are validated), so
    /// written as it is.
    pub location: Option<&'a str>,
    /// Why the request was answered so.
    pub reason: &'a Reason<'a>,
}

/// Lines one thread has logged and the writer has not taken yet.
type Pending = Mutex<Vec<u8>>;

struct Shared {
    /// Every logging thread's pending lines.
    pending: Mutex<Vec<Arc<Pending>>>,
    /// What the writer thread sleeps on between batches.
    idle: Mutex<()>,
    wake: Condvar,
    /// The output, and the emptied buffer of the last batch written (swapped for the next
    /// thread's pending lines, so batches allocate nothing).
    out: Mutex<(Box<dyn Write + Send>, Vec<u8>)>,
    dropped: AtomicU64,
}

/// A handle to the log (cheap to clone). [`AccessLog::off`] logs nothing.
#[derive(Clone)]
pub struct AccessLog {
    shared: Option<Arc<Shared>>,
}

impl AccessLog {
    /// Logs nothing (`FERRY_LOG` filtering `ferry_serve::access` out).
    pub fn off() -> AccessLog {
        AccessLog { shared: None }
    }

    /// Logs to `out` through a writer thread. The thread ends once every handle is dropped
    /// (after a last flush).
    pub fn to_writer(out: Box<dyn Write + Send>) -> AccessLog {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Vec::new()),
            idle: Mutex::new(()),
            wake: Condvar::new(),
            out: Mutex::new((out, Vec::with_capacity(FLUSH_BYTES))),
            dropped: AtomicU64::new(0),
        });
        let writer = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("ferry-access-log".into())
            .spawn(move || loop {
                let Some(shared) = writer.upgrade() else { return };
                {
                    let idle = shared.idle.lock().unwrap_or_else(|e| e.into_inner());
                    drop(shared.wake.wait_timeout(idle, FLUSH_INTERVAL));
                }
                shared.flush();
            })
            .expect("spawn the access-log writer thread");
        AccessLog { shared: Some(shared) }
    }

    /// Logs to standard output (through `std::io::stdout()`, whose lock keeps each batch of
    /// lines whole between other log lines).
    pub fn stdout() -> AccessLog {
        AccessLog::to_writer(Box::new(std::io::stdout()))
    }

    /// Whether lines are written at all (false for [`AccessLog::off`]).
    pub fn is_on(&self) -> bool {
        self.shared.is_some()
    }

    /// Lines dropped because the output did not keep up.
    pub fn dropped(&self) -> u64 {
        self.shared.as_ref().map_or(0, |s| s.dropped.load(Ordering::Relaxed))
    }

    /// Writes every pending line now.
    pub fn flush(&self) {
        if let Some(shared) = &self.shared {
            shared.flush();
        }
    }

    /// Formats one line for `entry` and appends it to this thread's pending lines; the writer
    /// thread writes it. Dropped (and counted) when it would take them past [`MAX_PENDING`] bytes.
    pub fn log(&self, entry: &Entry<'_>) {
        let Some(shared) = &self.shared else { return };
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            format_line(&mut line, SystemTime::now(), entry);
            shared.with_own_pending(|pending| {
                let mut pending = pending.lock().unwrap_or_else(|e| e.into_inner());
                if pending.len() + line.len() > MAX_PENDING {
                    shared.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                pending.extend_from_slice(&line);
                if pending.len() >= FLUSH_BYTES && pending.len() - line.len() < FLUSH_BYTES {
                    shared.wake.notify_one();
                }
            });
        });
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.flush();
    }
}

impl Shared {
    /// Calls `f` with this thread's pending buffer for this log, made and registered on the
    /// thread's first line.
    fn with_own_pending(self: &Arc<Self>, f: impl FnOnce(&Pending)) {
        MINE.with(|mine| {
            let mut mine = mine.borrow_mut();
            if let Some((_, pending)) = mine.iter().find(|(log, _)| std::ptr::eq(log.as_ptr(), Arc::as_ptr(self))) {
                return f(pending);
            }
            mine.retain(|(log, _)| log.strong_count() > 0);
            let pending = Arc::new(Mutex::new(Vec::with_capacity(FLUSH_BYTES)));
            self.pending.lock().unwrap_or_else(|e| e.into_inner()).push(pending.clone());
            f(&pending);
            mine.push((Arc::downgrade(self), pending));
        })
    }

    fn flush(&self) {
        // The output lock is held throughout, so two flushes write their batches in order.
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let (out, batch) = &mut *out;
        let threads = self.pending.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for pending in threads {
            {
                let mut pending = pending.lock().unwrap_or_else(|e| e.into_inner());
                if pending.is_empty() {
                    continue;
                }
                std::mem::swap(&mut *pending, batch);
            }
            // Nowhere to report a failed write but stderr; the lines are lost either way.
            if let Err(e) = out.write_all(batch).and_then(|()| out.flush()) {
                eprintln!("ferry serve: access log write failed: {e}");
            }
            batch.clear();
        }
    }
}

thread_local! {
    /// Each thread formats into its own buffer (no allocation once it has grown).
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
    /// The formatted date and time to the second, and the second it is for.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    /// This thread's pending buffer in each log it has written to (one, outside tests).
    static MINE: RefCell<Vec<(Weak<Shared>, Arc<Pending>)>> = const { RefCell::new(Vec::new()) };
}

/// `{"timestamp":"...","level":"INFO","target":"ferry_serve::access","fields":{...}}\n`
fn format_line(out: &mut Vec<u8>, now: SystemTime, e: &Entry<'_>) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(out, now);
    out.extend_from_slice(b"\",\"level\":\"INFO\",\"target\":\"ferry_serve::access\",\"fields\":{\"method\":\"");
    // The method, the outcome, the addresses and the status never need escaping.
    out.extend_from_slice(e.method.as_str().as_bytes());
    out.extend_from_slice(b"\",\"path\":\"");
    escape(out, e.path);
    out.extend_from_slice(b"\",\"client\":\"");
    push_ip(out, e.client);
    out.extend_from_slice(b"\",\"peer\":\"");
    push_ip(out, e.peer);
    out.extend_from_slice(b"\",\"label\":\"");
    escape(out, e.label.unwrap_or(""));
    out.extend_from_slice(b"\",\"status\":");
    out.extend_from_slice(crate::decision::decimal(&mut [0; 20], usize::from(e.status)).as_bytes());
    out.extend_from_slice(b",\"outcome\":\"");
    out.extend_from_slice(e.outcome.as_bytes());
    out.extend_from_slice(b"\",\"mirror\":\"");
    escape(out, e.mirror.unwrap_or(""));
    out.extend_from_slice(b"\",\"location\":\"");
    out.extend_from_slice(e.location.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\",\"reason\":\"");
    e.reason.pieces(&mut |piece, safe| if safe { out.extend_from_slice(piece.as_bytes()) } else { escape(out, piece) });
    out.extend_from_slice(b"\"}}\n");
}

/// RFC 3339 UTC with microseconds, like `tracing-subscriber`: `2026-11-28T04:47:22.123456Z`.
fn timestamp(out: &mut Vec<u8>, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != secs {
            let (days, rem) = (secs / 86_400, secs % 86_400);
            let (y, m, d) = civil_from_days(days as i64);
            cached.1.clear();
            let _ = write!(cached.1, "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60);
            cached.0 = secs;
        }
        out.extend_from_slice(cached.1.as_bytes());
    });
    let mut micros = since.subsec_micros();
    let mut digits = *b".000000Z";
    for d in digits[1..7].iter_mut().rev() {
        *d = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    out.extend_from_slice(&digits);
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Appends `s` as the inside of a JSON string. Paths are logged before they are validated, so
/// anything may need escaping; most lines need none, so the whole string is tested first, every
/// byte with no early exit (which the compiler turns into a test of many bytes at once).
fn escape(out: &mut Vec<u8>, s: &str) {
    let plain = |b: u8| (b >= 0x20) & (b != b'"') & (b != b'\\') & (b != 0x7f);
    if s.bytes().fold(true, |all, b| all & plain(b)) {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f | 0x7f => "",
            _ => continue,
        };
        out.extend_from_slice(&s.as_bytes()[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.extend_from_slice(esc.as_bytes());
        }
        start = i + 1;
    }
    out.extend_from_slice(&s.as_bytes()[start..]);
}

/// Appends an address; IPv4 (nearly every client) without the `fmt` machinery.
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => push_ipv4(out, v4),
        IpAddr::V6(v6) => push_ipv6(out, v6),
    }
}

fn push_ipv4(out: &mut Vec<u8>, ip: Ipv4Addr) {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        if octet >= 100 {
            out.push(b'0' + octet / 100);
        }
        if octet >= 10 {
            out.push(b'0' + octet / 10 % 10);
        }
        out.push(b'0' + octet % 10);
    }
}

/// As `Ipv6Addr`'s `Display` writes it (RFC 5952: lowercase, no leading zeros, the longest run
/// of two or more zero groups as `::`, the first of equal runs; IPv4-mapped as `::ffff:a.b.c.d`),
/// at a fifth of the cost; test `ipv6_text_is_the_standard_librarys`.
fn push_ipv6(out: &mut Vec<u8>, ip: Ipv6Addr) {
    if let Some(v4) = ip.to_ipv4_mapped() {
        out.extend_from_slice(b"::ffff:");
        return push_ipv4(out, v4);
    }
    let groups = ip.segments();
    let (mut zeros_at, mut zeros) = (0, 0);
    let mut run = 0;
    for (i, &group) in groups.iter().enumerate() {
        run = if group == 0 { run + 1 } else { 0 };
        if run > zeros {
            (zeros_at, zeros) = (i + 1 - run, run);
        }
    }
    let push_groups = |out: &mut Vec<u8>, groups: &[u16]| {
        for (i, &group) in groups.iter().enumerate() {
            if i > 0 {
                out.push(b':');
            }
            let digits = (16 - group.leading_zeros()).div_ceil(4).max(1);
            for d in (0..digits).rev() {
                out.push(b"0123456789abcdef"[usize::from(group >> (4 * d) & 0xf)]);
            }
        }
    };
    if zeros > 1 {
        push_groups(out, &groups[..zeros_at]);
        out.extend_from_slice(b"::");
        push_groups(out, &groups[zeros_at + zeros..]);
    } else {
        push_groups(out, &groups);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn entry<'a>(path: &'a str, reason: &'a Reason<'a>) -> Entry<'a> {
        Entry {
            method: &Method::GET,
            path,
            client: "203.0.113.7".parse().unwrap(),
            peer: "::1".parse().unwrap(),
            label: Some("aws:us-east-2"),
            status: 307,
            outcome: "mirror",
            mirror: Some("east"),
            location: Some("https://east.example/b/x"),
            reason,
        }
    }

    #[test]
    fn lines_are_json_with_every_field_even_for_hostile_paths() {
        let sink = Sink::default();
        let log = AccessLog::to_writer(Box::new(sink.clone()));
        let hostile = "/a\"b\\c\u{1}\u{7f}\té\r\n{\"x\":1}";
        let why = "exact match \"aws:us-east-2\"";
        let reason = Reason::Text(why);
        log.log(&entry(hostile, &reason));
        log.log(&entry("/v2/", &reason));
        log.flush();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["target"], "ferry_serve::access");
        assert_eq!(v["level"], "INFO");
        let f = &v["fields"];
        assert_eq!(f["path"], hostile);
        assert_eq!(f["reason"], why);
        assert_eq!(f["client"], "203.0.113.7");
        assert_eq!(f["peer"], "::1");
        assert_eq!(f["status"], 307);
        assert_eq!(f["mirror"], "east");
        assert_eq!(f["label"], "aws:us-east-2");
        assert_eq!(f["location"], "https://east.example/b/x");
        let ts = v["timestamp"].as_str().unwrap();
        assert_eq!(ts.len(), "2026-11-28T04:47:22.123456Z".len(), "{ts}");
    }

    #[test]
    fn escaping_matches_serde_json_for_every_byte_and_position() {
        // Up to 40 bytes: the whole-string test takes 32 bytes at a time, then the rest.
        for b in 0u8..=0x7f {
            for pad in 0..40 {
                let text = format!("{}{}{}", "a".repeat(pad), char::from(b), "b".repeat(39 - pad));
                let mut out = b"\"".to_vec();
                escape(&mut out, &text);
                out.push(b'"');
                let back: String = serde_json::from_slice(&out).unwrap();
                assert_eq!(back, text, "byte {b:#x} at {pad}");
            }
        }
        for ip in ["0.0.0.0", "255.255.255.255", "10.0.100.9", "2001:db8::1"] {
            let mut out = Vec::new();
            push_ip(&mut out, ip.parse().unwrap());
            assert_eq!(out, ip.as_bytes());
        }
    }

    #[test]
    fn ipv6_text_is_the_standard_librarys() {
        // Random addresses with each group zero half the time (so every shape of zero runs),
        // and the special ones.
        let random = ferry_testkit::images::random_bytes(6, 100_000 * 8);
        let mut words = random.chunks(8).map(|w| u64::from_le_bytes(w.try_into().unwrap()));
        let mut addrs: Vec<Ipv6Addr> =
            ["::", "::1", "::ffff:1.2.3.4", "::1.2.3.4", "1::", "2001:db8::1", "1:0:0:1:0:0:0:1"]
                .iter()
                .map(|a| a.parse().unwrap())
                .collect();
        for _ in 0..100_000 {
            let r = words.next().unwrap();
            let groups: [u16; 8] = std::array::from_fn(|i| {
                if r >> i & 1 == 0 {
                    0
                } else {
                    (r >> (16 + 6 * i)) as u16 >> (r >> (8 + i) & 15)
                }
            });
            addrs.push(Ipv6Addr::from(groups));
        }
        for ip in addrs {
            let mut out = Vec::new();
            push_ipv6(&mut out, ip);
            assert_eq!(out, ip.to_string().as_bytes());
        }
    }

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        let mut s = Vec::new();
        timestamp(&mut s, UNIX_EPOCH + Duration::from_micros(951_782_400_000_001)); // 2000-02-29
        assert_eq!(s, b"2000-02-29T00:00:00.000001Z");
        s.clear();
        timestamp(&mut s, UNIX_EPOCH + Duration::from_secs(1_795_841_242));
        assert_eq!(s, b"2026-11-28T04:47:22.000000Z");
        s.clear();
        timestamp(&mut s, UNIX_EPOCH);
        assert_eq!(s, b"1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn every_thread_has_its_own_pending_lines_and_all_are_written_in_their_order() {
        let sink = Sink::default();
        let log = AccessLog::to_writer(Box::new(sink.clone()));
        let reason = Reason::Text("r");
        std::thread::scope(|scope| {
            for t in 0..4 {
                let (log, reason) = (&log, &reason);
                scope.spawn(move || {
                    for i in 0..1000 {
                        log.log(&entry(&format!("/t{t}/{i}"), reason));
                    }
                });
            }
        });
        log.flush();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let mut next = [0; 4];
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let path = v["fields"]["path"].as_str().unwrap();
            let (t, i) = path[2..].split_once('/').unwrap();
            let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, next[t], "thread {t}'s lines out of order");
            next[t] += 1;
        }
        assert_eq!(next, [1000; 4]);
        assert_eq!(log.shared.as_ref().unwrap().pending.lock().unwrap().len(), 4);
    }

    #[test]
    fn a_thread_past_its_limit_drops_and_counts_its_lines() {
        let log = AccessLog::to_writer(Box::new(std::io::sink()));
        let shared = log.shared.as_ref().unwrap();
        // The output is stuck (the writer cannot take the output), and this thread's buffer is
        // full.
        let stuck = shared.out.lock().unwrap();
        log.log(&entry("/first", &Reason::Text("r")));
        shared.with_own_pending(|p| p.lock().unwrap().resize(MAX_PENDING, b' '));
        log.log(&entry("/dropped", &Reason::Text("r")));
        assert_eq!(log.dropped(), 1);
        // Another thread still logs.
        std::thread::scope(|s| {
            s.spawn(|| log.log(&entry("/other", &Reason::Text("r"))));
        });
        assert_eq!(log.dropped(), 1);
        drop(stuck);
    }

    #[test]
    fn the_writer_thread_flushes_on_its_own_and_ends_with_the_handles() {
        let sink = Sink::default();
        let log = AccessLog::to_writer(Box::new(sink.clone()));
        log.log(&entry("/x", &Reason::Text("r")));
        // Written within FLUSH_INTERVAL without an explicit flush.
        for _ in 0..100 {
            if !sink.0.lock().unwrap().is_empty() {
                break;
            }
            std::thread::sleep(FLUSH_INTERVAL / 4);
        }
        assert!(!sink.0.lock().unwrap().is_empty());
        assert_eq!(log.dropped(), 0);
        assert!(!AccessLog::off().is_on() && log.is_on());
    }
}
