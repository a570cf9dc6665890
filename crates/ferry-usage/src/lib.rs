//! `ferry report`: how much the mirrors save, from data an operator already has — `ferry
//! serve`'s access log (JSON Lines, plain or gzip), the mirrors' inventories (which record each
//! object's size) and a price table (docs/report.md).
//!
//! [`usage::Usage`] takes the lines one at a time and keeps only running totals per distinct key;
//! [`usage::Usage::finish`] prices them into a [`usage::Report`], which [`render`] writes as text,
//! JSON, CSV or one self-contained HTML page with inline SVG charts.

pub mod hash;
pub mod html;
pub mod input;
pub mod line;
pub mod mirrors;
pub mod prices;
pub mod render;
pub mod time;
pub mod usage;

pub use mirrors::Mirrors;
pub use prices::Prices;
pub use usage::{Options, Report, Usage};

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input (configuration, inventory, price table, flag) is wrong; the text says where.
    #[error("{0}")]
    Input(String),
    /// A file or stream could not be read or written.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}
