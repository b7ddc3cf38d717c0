//! Test support for the end-to-end suite, split by concern: the hermetic environment and
//! repositories ([`env`]), media made by `ffmpeg` ([`media`]), hub processes ([`hub`]),
//! real backends ([`backends`]), waiting and killing ([`wait`]), a lossy UDP link
//! ([`lossy`]), and the freshly built binaries ([`bins`]).

pub mod backends;
pub mod bins;
pub mod env;
pub mod hub;
pub mod lossy;
pub mod media;
pub mod wait;

pub use backends::*;
pub use env::*;
pub use hub::*;
pub use media::*;
pub use wait::*;
