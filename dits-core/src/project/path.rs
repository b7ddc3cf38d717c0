//! How projects write paths, undone: `file://` URLs (with `localhost`, Windows drive
//! letters and percent-encoded UTF-8), Windows separators, and image-sequence patterns.

/// The path a reference's string stands for. A `file:` URL loses its scheme and host
/// (`file://localhost/x` and `file:///x` are `/x`; `file:///C:/x` is `C:/x`; another host
/// gives a UNC `//host/x`) and is percent-decoded to bytes, then read as UTF-8 (left
/// encoded if the bytes are not UTF-8). Anything else is kept as written: a plain path
/// may hold a literal `%` (an image sequence's `%05d`).
pub fn decode(raw: &str) -> String {
    let s = raw.trim();
    let Some(rest) = strip_prefix_ignore_case(s, "file:") else {
        return s.to_string();
    };
    let path = if let Some(after) = rest.strip_prefix("//") {
        match after.find('/') {
            Some(0) => after.to_string(),
            Some(i) if after[..i].eq_ignore_ascii_case("localhost") => after[i..].to_string(),
            Some(_) => format!("//{after}"),
            None => format!("//{after}"),
        }
    } else {
        rest.to_string()
    };
    // Query and fragment are not part of a file path.
    let path = path.split(['?', '#']).next().unwrap_or("").to_string();
    let decoded = percent_decode(&path);
    let decoded = String::from_utf8(decoded).unwrap_or(path);
    // `/C:/Footage` is a Windows drive path written as a URL path.
    let b = decoded.as_bytes();
    if b.len() >= 3 && b[0] == b'/' && b[1].is_ascii_alphabetic() && b[2] == b':' {
        return decoded[1..].to_string();
    }
    decoded
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// `%XX` escapes as bytes; a `%` not followed by two hex digits stays as it is.
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// The path with `\` as `/` (Windows paths compare with POSIX ones component by
/// component).
pub fn with_slashes(path: &str) -> String {
    path.replace('\\', "/")
}

/// An absolute path: POSIX `/…`, a drive letter `C:\…` or `C:/…`, or UNC `\\host\…`.
pub fn is_absolute(path: &str) -> bool {
    let b = path.as_bytes();
    b.first() == Some(&b'/')
        || b.first() == Some(&b'\\')
        || (b.len() >= 3
            && b[0].is_ascii_alphabetic()
            && b[1] == b':'
            && matches!(b[2], b'/' | b'\\'))
}

/// The last component, whichever separator the path uses.
pub fn file_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// Whether the path stands for numbered files rather than one: a printf-style frame
/// number (`%05d`, `%d`) or MLT's `/.all.EXT` (every file of that extension).
pub fn is_sequence(path: &str) -> bool {
    file_name(path).starts_with(".all.") || printf_number(path).is_some()
}

/// The span and width of a `%d` / `%0Nd` frame-number pattern in `path`.
pub fn printf_number(path: &str) -> Option<(usize, usize, usize)> {
    let b = path.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let mut j = i + 1;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if j < b.len() && b[j] == b'd' {
                let width = path[i + 1..j].parse::<usize>().unwrap_or(0);
                return Some((i, j + 1, width));
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls_decode_to_paths() {
        assert_eq!(
            decode("file:///Volumes/SSD%20A/Job42/a.mov"),
            "/Volumes/SSD A/Job42/a.mov"
        );
        assert_eq!(
            decode("file://localhost/Users/e/clip.mov"),
            "/Users/e/clip.mov"
        );
        assert_eq!(decode("FILE:///C:/Footage/b.mp4"), "C:/Footage/b.mp4");
        assert_eq!(
            decode("file:///media/caf%C3%A9/%E6%98%A0%E5%83%8F.mov"),
            "/media/café/映像.mov"
        );
        assert_eq!(decode("file://nas/share/x.mov"), "//nas/share/x.mov");
        // Not UTF-8 once decoded: left as written.
        assert_eq!(decode("file:///a/%FF.mov"), "/a/%FF.mov");
        // Plain paths keep their percent signs.
        assert_eq!(decode("frames/img_%05d.png"), "frames/img_%05d.png");
        assert_eq!(decode("C:\\Footage\\c.mov"), "C:\\Footage\\c.mov");
        assert_eq!(decode("file:///a/100%.mov"), "/a/100%.mov");
    }

    #[test]
    fn paths_are_classified() {
        assert!(
            is_absolute("/a")
                && is_absolute("C:\\a")
                && is_absolute("d:/a")
                && is_absolute("\\\\nas\\a")
        );
        assert!(!is_absolute("media/a.mov") && !is_absolute("C:a"));
        assert_eq!(file_name("C:\\Footage\\c.mov"), "c.mov");
        assert!(is_sequence("frames/img_%05d.png") && is_sequence("stills/.all.jpg"));
        assert_eq!(printf_number("img_%05d.png"), Some((4, 8, 5)));
        assert!(!is_sequence("a.mov"));
    }
}
