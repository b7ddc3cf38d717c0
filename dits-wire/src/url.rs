//! `dits://host[:port]/owner/name` remote URLs.

use std::fmt;

/// QUIC (UDP) and HTTPS (TCP) both listen on this port unless told otherwise.
pub const DEFAULT_PORT: u16 = 7443;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    pub host: String,
    pub port: u16,
    /// `owner/name`.
    pub repo: String,
}

impl RemoteUrl {
    pub fn parse(s: &str) -> Result<RemoteUrl, String> {
        let bad = |why: &str| format!("{s}: {why} (expected dits://HOST[:PORT]/OWNER/NAME)");
        let rest = s
            .strip_prefix("dits://")
            .ok_or_else(|| bad("not a dits:// URL"))?;
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("no repository path"))?;
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h, p.parse::<u16>().map_err(|_| bad("bad port"))?)
            }
            _ => (authority, DEFAULT_PORT),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let repo = path.trim_end_matches('/').trim_end_matches(".git");
        let parts: Vec<&str> = repo.split('/').collect();
        if parts.len() != 2 || parts.iter().any(|p| !valid_name(p)) {
            return Err(bad("the repository must be OWNER/NAME"));
        }
        Ok(RemoteUrl {
            host: host.to_string(),
            port,
            repo: repo.to_string(),
        })
    }

    /// `dits://host:port`, the key for per-hub settings (`dits.<base>.fingerprint`) and
    /// credentials.
    pub fn base(&self) -> String {
        format!("dits://{}", self.authority())
    }

    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base(), self.repo)
    }
}

/// Owner and repository names: what a path segment and a file name can both hold.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let u = RemoteUrl::parse("dits://127.0.0.1:9000/studio/film.git").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.repo.as_str()),
            ("127.0.0.1", 9000, "studio/film")
        );
        assert_eq!(u.base(), "dits://127.0.0.1:9000");
        assert_eq!(
            RemoteUrl::parse("dits://hub/a/b").unwrap().port,
            DEFAULT_PORT
        );
        for bad in [
            "https://x/a/b",
            "dits://x/a",
            "dits://x/a/../b",
            "dits://:1/a/b",
            "dits://x/a/b/c",
        ] {
            assert!(RemoteUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
