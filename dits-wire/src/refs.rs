//! What both ends accept as a Git ref name and a Git object id. The hub checks what a
//! client asks it to store; the client checks what a hub answers before any of it reaches
//! a `git` command line or the remote-helper protocol (where a name holding a newline
//! would split one answer line in two, and a value such as `--output=FILE` would be read
//! by `git` as an option).

/// Longest ref name either end accepts.
pub const MAX_REF_NAME: usize = 1024;

/// A full ref name under `refs/`, by the rules of `git check-ref-format`: no component
/// that is empty, starts with `.` or ends with `.lock`; no `..`, `@{`, control
/// characters, space or any of `~^:?*[\`; not ending in `/` or `.`.
pub fn valid_ref_name(name: &str) -> bool {
    name.starts_with("refs/")
        && name.len() <= MAX_REF_NAME
        && !name.contains("..")
        && !name.contains("@{")
        && !name.ends_with('.')
        && !name
            .bytes()
            .any(|b| b < 0x20 || b == 0x7f || b" ~^:?*[\\".contains(&b))
        && name
            .split('/')
            .all(|c| !c.is_empty() && !c.starts_with('.') && !c.ends_with(".lock"))
}

/// A Git object id: SHA-1 (40 hex digits) or SHA-256 (64).
pub fn valid_oid(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_names_follow_check_ref_format() {
        for good in [
            "refs/heads/main",
            "refs/heads/feature/grade-v2",
            "refs/tags/v1.0",
            "refs/heads/a@b",
        ] {
            assert!(valid_ref_name(good), "{good}");
        }
        for bad in [
            "HEAD",
            "main",
            "refs/heads/",
            "refs//heads",
            "refs/heads/a..b",
            "refs/heads/.hidden",
            "refs/heads/x.lock",
            "refs/heads/x.lock/y",
            "refs/heads/x.",
            "refs/heads/x/",
            "refs/heads/a~1",
            "refs/heads/a\0",
            "refs/heads/a@{1}",
            "refs/heads/a b",
            "refs/heads/a\nb",
            "refs/heads/a\u{7f}",
            "refs/heads/a:b",
            "refs/heads/a\\b",
            "--output=/tmp/x",
        ] {
            assert!(!valid_ref_name(bad), "{bad:?}");
        }
        assert!(!valid_ref_name(&format!(
            "refs/heads/{}",
            "a".repeat(MAX_REF_NAME)
        )));
    }

    #[test]
    fn oids_are_forty_or_sixty_four_hex_digits() {
        assert!(valid_oid(&"a".repeat(40)));
        assert!(valid_oid(&"0123456789abcdef".repeat(4)));
        for bad in [
            "a".repeat(39),
            "a".repeat(41),
            "g".repeat(40),
            format!("--output={}", "a".repeat(31)),
            String::new(),
        ] {
            assert!(!valid_oid(&bad), "{bad:?}");
        }
    }
}
