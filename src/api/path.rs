//! [`ApiPath`]: what a request is sent to. Scripts build paths from segments, each
//! percent-encoded into exactly one path segment, so a server-provided id can never add a
//! segment, climb with `..`, or start a query or fragment; a path written as one string is
//! refused when it holds anything such an id could have smuggled in ([`check_text`]).
//! Joining to the base URL and the query are [`crate::api::target`]'s concern.

use std::fmt;

/// A request path, as scripts and native callers give it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiPath {
    /// A path written as one string (`"/api/v2/recording/search"`), relative to the base
    /// URL or an absolute URL on the tenant's origin.
    Text(String),
    /// A path built from segments: `/` followed by the segments, each already encoded by
    /// [`encode_segment`] (build it with [`ApiPath::from_segments`]).
    Segments(String),
    /// A link the server returned (a next-page link): followed as given, on the tenant's
    /// origin only.
    Link(String),
}

impl ApiPath {
    /// The path made of `segments`, each percent-encoded as one segment. Refuses an empty,
    /// `.` or `..` segment, naming it.
    pub fn from_segments<I, S>(segments: I) -> Result<ApiPath, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut path = String::new();
        for (index, segment) in segments.into_iter().enumerate() {
            let encoded = encode_segment(segment.as_ref())
                .map_err(|message| format!("path segment {index}: {message}"))?;
            path.push('/');
            path.push_str(&encoded);
        }
        if path.is_empty() {
            return Err("a path needs at least one segment".into());
        }
        Ok(ApiPath::Segments(path))
    }

    /// The path as written or encoded (what is joined to the base URL).
    pub fn as_str(&self) -> &str {
        match self {
            ApiPath::Text(text) | ApiPath::Segments(text) | ApiPath::Link(text) => text,
        }
    }
}

impl fmt::Display for ApiPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for ApiPath {
    fn from(text: &str) -> Self {
        ApiPath::Text(text.to_string())
    }
}

impl From<String> for ApiPath {
    fn from(text: String) -> Self {
        ApiPath::Text(text)
    }
}

impl From<&ApiPath> for ApiPath {
    fn from(path: &ApiPath) -> Self {
        path.clone()
    }
}

/// `segment` percent-encoded as one path segment: every byte outside RFC 3986's
/// unreserved characters (`A-Z a-z 0-9 - . _ ~`) becomes `%XX` (UTF-8 bytes), so `/`, `?`,
/// `#`, `%`, `\`, spaces and control characters are all encoded. Refuses an empty, `.` or
/// `..` segment, which no encoding can keep from meaning "this" or "parent" directory.
pub fn encode_segment(segment: &str) -> Result<String, String> {
    if segment.is_empty() || segment == "." || segment == ".." {
        return Err(format!(
            "{segment:?} cannot be a path segment (empty, `.` and `..` would change which \
             resource is addressed)"
        ));
    }
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    Ok(encoded)
}

/// Refuses a path written as one string that holds what an interpolated value could use to
/// change the request: control characters, `\`, `#`, `?`, a `.` or `..` segment (also
/// percent-encoded), or a percent-encoded `/` or `\`. The error names the path and says
/// to pass an array of segments (and the query as a map).
pub fn check_text(text: &str) -> Result<(), String> {
    let problem = text_problem(text);
    match problem {
        None => Ok(()),
        Some(problem) => Err(format!(
            "the path {text:?} {problem}; pass the path as an array of segments, e.g. \
             [\"api\", \"v2\", \"recording\", id] (each one is percent-encoded), and the \
             query as a map"
        )),
    }
}

fn text_problem(text: &str) -> Option<&'static str> {
    if text.chars().any(char::is_control) {
        return Some("contains a control character");
    }
    if text.contains('\\') {
        return Some("contains a backslash");
    }
    if text.contains('#') {
        return Some("contains `#`");
    }
    if text.contains('?') {
        return Some("contains `?` (a query belongs in the query map)");
    }
    // The path part: after `scheme://authority` for an absolute URL.
    let path = match text.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
        None => text,
    };
    for segment in path.split('/') {
        let lower = segment.to_ascii_lowercase();
        if lower.contains("%2f") || lower.contains("%5c") {
            return Some("contains a percent-encoded `/` or `\\`");
        }
        let decoded = lower.replace("%2e", ".");
        if decoded == "." || decoded == ".." {
            return Some("contains a `.` or `..` segment");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_outside_unreserved_is_encoded() {
        assert_eq!(encode_segment("abc-XYZ_0.9~").unwrap(), "abc-XYZ_0.9~");
        assert_eq!(encode_segment("a/b").unwrap(), "a%2Fb");
        assert_eq!(encode_segment("new\nline").unwrap(), "new%0Aline");
        assert_eq!(encode_segment("x?x=1#f").unwrap(), "x%3Fx%3D1%23f");
        assert_eq!(encode_segment("50%").unwrap(), "50%25");
        assert_eq!(encode_segment("a\\b c\0").unwrap(), "a%5Cb%20c%00");
        assert_eq!(encode_segment("é").unwrap(), "%C3%A9");
        assert_eq!(encode_segment("...").unwrap(), "...");
        assert_eq!(encode_segment("%2e%2e").unwrap(), "%252e%252e");
    }

    #[test]
    fn empty_and_dot_segments_are_refused_by_name() {
        for bad in ["", ".", ".."] {
            let err = encode_segment(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        let err = ApiPath::from_segments(["api", "..", "x"]).unwrap_err();
        assert!(err.contains("segment 1") && err.contains("\"..\""), "{err}");
        assert!(ApiPath::from_segments(Vec::<String>::new()).is_err());
    }

    #[test]
    fn string_paths_an_id_could_have_rewritten_are_refused() {
        for good in [
            "/api/v2/recording/search",
            "contacts/completed",
            "http://h:1/media-download/v1/files/j-1",
            "/a/.../b%20c",
        ] {
            assert_eq!(check_text(good), Ok(()), "{good}");
        }
        for bad in [
            "/api/v2/recording/new\nline",
            "/api/v2/recording/a\\b",
            "/api/v2/recording/a#b",
            "/api/v2/recording/x?x=1",
            "/api/v2/recording/../download",
            "/api/v2/recording/./x",
            "/api/v2/recording/%2E%2e/x",
            "/api/v2/recording/a%2Fb",
            "/api/v2/recording/a%5cb",
            "/api/v2/recording/nul\0",
            "http://h:1/a/../b",
        ] {
            let err = check_text(bad).unwrap_err();
            assert!(
                err.contains(&format!("{bad:?}")) && err.contains("array of segments"),
                "{err}"
            );
        }
    }

    #[test]
    fn segments_join_into_one_path() {
        let path =
            ApiPath::from_segments(["api", "v2", "recording", "a/../b", "download"]).unwrap();
        assert_eq!(path.as_str(), "/api/v2/recording/a%2F..%2Fb/download");
    }
}
