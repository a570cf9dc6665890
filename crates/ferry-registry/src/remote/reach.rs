//! Whether a registry host can be connected to, as this run knows it: the first request finds
//! out while the others wait, and a host that cannot be resolved or connected to is given up on
//! after one attempt (and its retries), so its other requests fail at once with its first error.

use std::sync::Arc;

use tokio::sync::watch;

/// One host's reachability.
pub(super) struct Reachability {
    /// `host[:port]` as requests address it.
    host: String,
    state: watch::Sender<Reach>,
}

impl Reachability {
    pub(super) fn new(host: &str) -> Reachability {
        Reachability { host: host.to_string(), state: watch::Sender::new(Reach::Unknown) }
    }

    /// Wait until a request may go to the host: `Some(probe)` when this request is to find out
    /// whether the host can be connected to, `None` when it is known to be; the host's first
    /// connection failure when it is known not to be.
    pub(super) async fn admit(&self) -> std::result::Result<Option<Probe<'_>>, Arc<str>> {
        let mut reach = self.state.subscribe();
        loop {
            if self.move_reach(|r| matches!(r, Reach::Unknown), || Reach::Probing) {
                return Ok(Some(Probe(self)));
            }
            match &*reach.borrow_and_update() {
                Reach::Connected => return Ok(None),
                Reach::Unreachable(first) => return Err(first.clone()),
                Reach::Unknown => continue,
                Reach::Probing => {}
            }
            // The sender lives as long as `self`: this only returns on a change.
            let _ = reach.changed().await;
        }
    }

    /// Move to `to()` if the state is one `from` accepts, waking the waiting requests; whether it
    /// moved.
    fn move_reach(&self, from: impl FnOnce(&Reach) -> bool, to: impl FnOnce() -> Reach) -> bool {
        self.state.send_if_modified(|r| {
            let moves = from(r);
            if moves {
                *r = to();
            }
            moves
        })
    }

    pub(super) fn connected(&self) {
        self.move_reach(|r| !matches!(r, Reach::Connected | Reach::Unreachable(_)), || Reach::Connected);
    }

    /// Give up on the host: `first` is what every later request to it fails with.
    pub(super) fn give_up(&self, first: &str) {
        if self.move_reach(|r| !matches!(r, Reach::Unreachable(_)), || Reach::Unreachable(first.into())) {
            tracing::warn!("registry {} unreachable: {first}; its remaining requests fail at once", self.host);
        }
    }

    pub(super) fn first_failure(&self) -> Option<Arc<str>> {
        match &*self.state.borrow() {
            Reach::Unreachable(first) => Some(first.clone()),
            _ => None,
        }
    }

    /// After a connection failure: find out again (`Some`), unless another request already is.
    pub(super) fn find_out_again(&self) -> Option<Probe<'_>> {
        self.move_reach(|r| matches!(r, Reach::Unknown | Reach::Connected), || Reach::Probing).then_some(Probe(self))
    }
}

/// Whether a registry host can be connected to, as far as this run knows. While one request
/// finds out, the others wait for its answer, so that a host that cannot be resolved or connected
/// to costs one connection attempt (and its retries) rather than one per request.
#[derive(Debug)]
enum Reach {
    /// Nobody is finding out: the next request does.
    Unknown,
    /// One request is trying to connect, retrying on connection failures.
    Probing,
    Connected,
    /// A request could not connect, even after its retries. Every request that starts afterwards
    /// fails at once with that request's error; requests already sent finish as they will.
    Unreachable(Arc<str>),
}

/// Held by the request finding out whether its host can be connected to. Dropped before it
/// knows (the request failed otherwise, or was cancelled), it lets the next request find out.
pub(super) struct Probe<'a>(&'a Reachability);

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        self.0.move_reach(|r| matches!(r, Reach::Probing), || Reach::Unknown);
    }
}
