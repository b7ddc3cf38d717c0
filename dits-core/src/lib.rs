//! dits-core: everything Dits knows about content, with no knowledge of Git, networks,
//! FUSE or async runtimes. Media comes in as bytes and leaves as a pointer plus stored
//! objects; pointers go back to bytes through the same store.

pub mod chunk_id;
pub mod chunker;
pub mod clean;
pub mod crypt;
pub mod disk;
pub mod envelope;
pub mod hex;
pub mod inspect;
pub mod keyring;
pub mod media;
pub mod memory;
pub mod pointer;
pub mod project;
pub mod recipe;
pub mod smudge;
pub mod store;
#[cfg(test)]
mod test_bytes;
pub mod wrap;

pub use chunk_id::ChunkId;
pub use clean::{
    clean, clean_with, CleanError, CleanOutcome, ContentSource, Speculated, SpeculationPolicy,
};
pub use pointer::{Pointer, PointerError};
pub use recipe::Recipe;
pub use smudge::{smudge, verify, SmudgeError};
pub use store::{ChunkStore, LocalStore, StoreError};
