//! What Ferry's commands report, in one vocabulary, so that `promote images`, `promote files`
//! and `mirror` say the same thing the same way in text and in JSON:
//!
//! - [`Status`]: where one item (an edge, a file at a destination, a blob in a store) ended up,
//!   decided by one rule ([`Status::of`]) from what the plan decided and what happened;
//! - [`why`]: which explanation an item shows, the error or the plan's reason;
//! - [`Tally`]: how many items ended up in each status, and whether the run succeeded;
//! - [`human_bytes`]: sizes for people;
//! - [`Progress`]: how the engines report progress without knowing how (or whether) it is drawn:
//!   the `ferry` binary draws a bar on a terminal; tests and JSON runs pass [`Silent`].

use serde::Serialize;

/// Where one item of a run ended up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Dry run: would be done.
    Planned,
    /// Done, and verified.
    Promoted,
    /// Already there: nothing to do.
    Skipped,
    /// Not done, by rule (a tag move, a source that is lost, other bytes in the way).
    Refused,
    /// Tried, and it did not work.
    Failed,
}

/// What a plan decided for one item, before anything was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decided {
    /// Already there.
    Skip,
    /// Not to be done.
    Refuse,
    /// To be done (copied, tagged, overwritten).
    Act,
}

impl Status {
    /// The one rule: a refusal or a skip stays that whatever else happened; an item to act on
    /// is planned in a dry run, failed when it has an error, promoted otherwise.
    pub fn of(decided: Decided, confirmed: bool, failed: bool) -> Status {
        match (decided, confirmed, failed) {
            (Decided::Refuse, _, _) => Status::Refused,
            (Decided::Skip, _, _) => Status::Skipped,
            (Decided::Act, false, _) => Status::Planned,
            (Decided::Act, true, true) => Status::Failed,
            (Decided::Act, true, false) => Status::Promoted,
        }
    }
}

/// The explanation an item shows: its error when it has one (what went wrong says more than
/// what was planned), else the plan's reason.
pub fn why<'a>(reason: Option<&'a str>, error: Option<&'a str>) -> Option<&'a str> {
    error.or(reason)
}

/// How many items ended up in each status (serialized as five counts, flattened into a
/// command's summary).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Items a dry run would act on.
    pub planned: usize,
    /// Items done and verified.
    pub promoted: usize,
    /// Items already there.
    pub skipped: usize,
    /// Items not done, by rule.
    pub refused: usize,
    /// Items tried that did not work.
    pub failed: usize,
}

impl Tally {
    /// Counts each status once per time it occurs.
    pub fn of(statuses: impl IntoIterator<Item = Status>) -> Tally {
        let mut tally = Tally::default();
        for status in statuses {
            *match status {
                Status::Planned => &mut tally.planned,
                Status::Promoted => &mut tally.promoted,
                Status::Skipped => &mut tally.skipped,
                Status::Refused => &mut tally.refused,
                Status::Failed => &mut tally.failed,
            } += 1;
        }
        tally
    }

    /// Nothing refused, nothing failed: the exit status may be 0.
    pub fn is_success(&self) -> bool {
        self.refused == 0 && self.failed == 0
    }
}

/// `n` bytes for people: `512 B`, `1.5 KiB`, `3.0 GiB` (binary units, one decimal).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Progress as an engine reports it: the phase it is in, and bytes done out of a total. Every
/// method may be called from any thread.
pub trait Progress: Send + Sync {
    /// What the run is doing now ("reading registries", "copying").
    fn phase(&self, what: &str);
    /// The bytes this phase will move; progress starts again from 0.
    fn total(&self, bytes: u64);
    /// The total grows by `bytes` (work found as the run goes, or bytes read again).
    fn grow(&self, bytes: u64);
    /// `bytes` more are done.
    fn advance(&self, bytes: u64);
    /// The run is over: whatever shows progress goes away.
    fn finish(&self);
}

/// Progress that is not shown.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Progress for Silent {
    fn phase(&self, _what: &str) {}
    fn total(&self, _bytes: u64) {}
    fn grow(&self, _bytes: u64) {}
    fn advance(&self, _bytes: u64) {}
    fn finish(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_for_every_status() {
        use Decided::*;
        for confirmed in [false, true] {
            for failed in [false, true] {
                assert_eq!(Status::of(Refuse, confirmed, failed), Status::Refused);
                assert_eq!(Status::of(Skip, confirmed, failed), Status::Skipped);
            }
        }
        assert_eq!(Status::of(Act, false, true), Status::Planned);
        assert_eq!(Status::of(Act, true, true), Status::Failed);
        assert_eq!(Status::of(Act, true, false), Status::Promoted);
    }

    #[test]
    fn the_error_wins_over_the_reason() {
        assert_eq!(why(Some("tag absent"), Some("HTTP 500")), Some("HTTP 500"));
        assert_eq!(why(Some("tag absent"), None), Some("tag absent"));
        assert_eq!(why(None, None), None);
    }

    #[test]
    fn tally_counts_and_serializes_flat() {
        let tally = Tally::of([Status::Promoted, Status::Promoted, Status::Refused, Status::Planned]);
        assert_eq!((tally.promoted, tally.refused, tally.planned, tally.failed), (2, 1, 1, 0));
        assert!(!tally.is_success());
        assert!(Tally::of([Status::Skipped, Status::Promoted]).is_success());
        let json = serde_json::to_value(tally).unwrap();
        assert_eq!(json, serde_json::json!({"planned": 1, "promoted": 2, "skipped": 0, "refused": 1, "failed": 0}));
        assert_eq!(serde_json::to_value(Status::Promoted).unwrap(), "promoted");
    }

    #[test]
    fn bytes_for_people() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(human_bytes(u64::MAX), "16777216.0 TiB");
    }
}
