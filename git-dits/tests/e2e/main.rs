//! End-to-end tests: the real `git`, the built `git-dits`, media from `ffmpeg`.

mod bad_input;
mod dedup;
mod roundtrip;
mod store;
mod support;
