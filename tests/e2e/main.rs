//! End-to-end tests: the real `git`, the built `git-dits`, media from `ffmpeg`.

mod attacks;
mod bad_input;
mod clean_working_file;
mod dedup;
mod hostile_hub;
mod hub;
mod install;
mod locks;
mod mount;
mod roundtrip;
mod s3;
mod scale;
mod store;
mod tracks;
