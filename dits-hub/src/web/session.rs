//! Signing in to the pages: a user gives their access token once; the hub issues a
//! token of its own for the browser session (`AccountChange::IssueToken`, audited) and
//! keeps it in an HTTP-only, `Secure`, `SameSite=Strict` cookie scoped to `/ui`. Signing
//! out revokes that token, so a copied cookie stops working too.
//!
//! Every form carries a CSRF value: before sign-in, a random one also set in a short-lived
//! cookie (double submit); after, one derived from the session token, which a page from
//! another site cannot read.

use axum::http::{header, HeaderMap};

/// The session cookie's name.
pub const SESSION: &str = "dits_session";
/// The sign-in form's CSRF cookie.
pub const LOGIN: &str = "dits_login";
/// How long a session lasts by default (seconds): `serve --session-ttl` sets it. The
/// hub's token expires then, and the cookie with it.
pub const SESSION_AGE: u32 = 12 * 3600;

/// The value of cookie `name` in the request, if sent.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value for `name`, HTTP-only, Secure, SameSite=Strict, under `/ui`;
/// `max_age` 0 deletes it.
pub fn cookie_header(name: &str, value: &str, max_age: u32) -> String {
    format!("{name}={value}; Path=/ui; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict")
}

/// Adds [`cookie_header`] to `response` (the values are tokens and hex: always a valid header).
pub fn set_cookie(response: &mut axum::response::Response, name: &str, value: &str, max_age: u32) {
    if let Ok(value) = cookie_header(name, value, max_age).parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// The CSRF value of the forms of the session holding `token`.
pub fn csrf_for(token: &str) -> String {
    let key = blake3::hash(token.as_bytes());
    blake3::keyed_hash(key.as_bytes(), b"dits-csrf-v1").to_hex()[..32].to_string()
}

/// Whether `sent` equals `expected`, in time that does not depend on where they differ.
pub fn same(sent: &str, expected: &str) -> bool {
    let (a, b) = (sent.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            "a=1; dits_session=tok; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&headers, SESSION).as_deref(), Some("tok"));
        assert_eq!(cookie(&headers, "missing"), None);
        assert!(cookie_header(SESSION, "x", 10).contains("HttpOnly; Secure; SameSite=Strict"));
    }

    #[test]
    fn csrf_values_belong_to_one_session() {
        assert_eq!(csrf_for("a"), csrf_for("a"));
        assert_ne!(csrf_for("a"), csrf_for("b"));
        assert!(same(&csrf_for("a"), &csrf_for("a")));
        assert!(!same(&csrf_for("a"), &csrf_for("b")));
        assert!(!same("", &csrf_for("a")));
    }
}
