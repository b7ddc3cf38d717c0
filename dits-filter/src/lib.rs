//! dits-filter: Git's clean/smudge filter protocols on top of dits-core. `pktline` and
//! `process` speak the protocol; `dits` is the Dits filter itself (pointer in Git,
//! chunks in the local store).

pub mod dits;
pub mod pktline;
pub mod process;

pub use dits::{DitsFilter, FilterError, ObjectSource, SourceError};
pub use process::{serve, Filter, ProtocolError};
