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

/// Why a string is not a `dits://` remote URL. Each names the URL and the form expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("{url}: not a dits:// URL {EXPECTED}")]
    NotDits { url: String },
    #[error("{url}: no repository path {EXPECTED}")]
    NoRepositoryPath { url: String },
    #[error("{url}: bad port {EXPECTED}")]
    BadPort { url: String },
    #[error("{url}: no host {EXPECTED}")]
    NoHost { url: String },
    #[error("{url}: the repository must be OWNER/NAME {EXPECTED}")]
    BadRepository { url: String },
}

/// The tail of every [`UrlError`] message.
const EXPECTED: &str = "(expected dits://HOST[:PORT]/OWNER/NAME)";

impl RemoteUrl {
    pub fn parse(s: &str) -> Result<RemoteUrl, UrlError> {
        let url = || s.to_string();
        let rest = s
            .strip_prefix("dits://")
            .ok_or_else(|| UrlError::NotDits { url: url() })?;
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| UrlError::NoRepositoryPath { url: url() })?;
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| UrlError::BadPort { url: url() })?,
            ),
            _ => (authority, DEFAULT_PORT),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(UrlError::NoHost { url: url() });
        }
        let repo = path.trim_end_matches('/').trim_end_matches(".git");
        let parts: Vec<&str> = repo.split('/').collect();
        if parts.len() != 2 || parts.iter().any(|p| !valid_name(p)) {
            return Err(UrlError::BadRepository { url: url() });
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
        assert_eq!(
            RemoteUrl::parse("dits://x:99999/a/b")
                .unwrap_err()
                .to_string(),
            "dits://x:99999/a/b: bad port (expected dits://HOST[:PORT]/OWNER/NAME)"
        );
    }
}
