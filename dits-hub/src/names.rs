//! What the hub accepts as a ref name, an object id of Git (the rules both ends share,
//! from `dits_wire::refs`) and a lockable path. Pure checks on strings from the network,
//! shared by the ref updates and the lock operations; this module depends on nothing else
//! in the hub.

/// Paths longer than this are refused (Git itself handles longer, file systems rarely).
pub const MAX_PATH_LEN: usize = 4096;

pub use dits_wire::refs::{valid_oid, valid_ref_name};

/// Why a string is not a lockable path; each message names the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path is empty")]
    Empty,
    #[error("the path is {0} bytes long; at most {MAX_PATH_LEN} are allowed")]
    TooLong(usize),
    #[error("{0:?} is absolute; give a path relative to the repository root")]
    Absolute(String),
    #[error("{0:?} contains a NUL or control character")]
    ControlCharacter(String),
    #[error("{0:?} contains a backslash; paths use '/'")]
    Backslash(String),
    #[error("{0:?} has an empty component")]
    EmptyComponent(String),
    #[error("{path:?} has a '{component}' component")]
    DotComponent {
        path: String,
        component: &'static str,
    },
    #[error("{0:?} is inside .git")]
    InsideGit(String),
}

/// A lockable path is a repository-relative path as Git writes it: `/`-separated, no
/// empty, `.` or `..` components, no leading `/`, no NUL or other control characters,
/// not inside `.git`, at most [`MAX_PATH_LEN`] bytes.
pub fn check_path(path: &str) -> Result<(), PathError> {
    let owned = || path.to_string();
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if path.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong(path.len()));
    }
    if path.starts_with('/') {
        return Err(PathError::Absolute(owned()));
    }
    if path.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(PathError::ControlCharacter(owned()));
    }
    if path.contains('\\') {
        return Err(PathError::Backslash(owned()));
    }
    for part in path.split('/') {
        match part {
            "" => return Err(PathError::EmptyComponent(owned())),
            "." => {
                return Err(PathError::DotComponent {
                    path: owned(),
                    component: ".",
                })
            }
            ".." => {
                return Err(PathError::DotComponent {
                    path: owned(),
                    component: "..",
                })
            }
            p if p.eq_ignore_ascii_case(".git") => return Err(PathError::InsideGit(owned())),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockable_paths_are_relative_plain_and_outside_git() {
        for ok in ["clip.mp4", "a/b/c.mov", "with space/ü.mp4", ".hidden/x"] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(MAX_PATH_LEN + 1);
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "../x",
            "./x",
            "a//b",
            "a/",
            "a\0b",
            "a\nb",
            ".git/config",
            "x/.GIT/y",
            "a\\b",
            long.as_str(),
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
    }
}
