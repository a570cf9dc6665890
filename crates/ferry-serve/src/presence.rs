//! What the router may consult about mirrors besides their inventories: presence learned by
//! probes and health. [`crate::probe::Prober`] is the live implementation.

use crate::decision::{Holding, Object};
use crate::snapshot::Mirror;

/// What is known about mirrors without an inventory (probe results) and about mirror health.
/// Consulted only, never waited on: an implementation answers from what it already knows.
pub trait Presence: Send + Sync {
    /// Only asked about mirrors without an inventory.
    fn holds(&self, mirror: &Mirror, object: Object<'_>) -> Holding;
    /// Whether the mirror is in the routing (its health probes pass).
    fn healthy(&self, mirror: &Mirror) -> bool;
}

/// No probing: presence is unknown for every mirror without an inventory (so such a mirror is never
/// chosen), and every mirror counts as healthy.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProbes;

impl Presence for NoProbes {
    fn holds(&self, _mirror: &Mirror, _object: Object<'_>) -> Holding {
        Holding::Unknown
    }
    fn healthy(&self, _mirror: &Mirror) -> bool {
        true
    }
}
