//! [`FlowError`]: everything that can stop a flow, saying what was done to what. Whether
//! an error is worth retrying is decided here, once.

use crate::keys::KeyError;
use crate::storage::StorageError;

/// Why an encrypted object could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("not a cxpipe encrypted object (bad magic)")]
    BadMagic,
    #[error("unsupported encrypted format version {0}")]
    Version(u8),
    #[error("unsupported algorithm id {0}")]
    Algorithm(u8),
    #[error("header is malformed: {0}")]
    Header(&'static str),
    #[error("object was encrypted with key id {found}, not {expected} (key {name})")]
    WrongKey {
        name: String,
        expected: String,
        found: String,
    },
    #[error("no configured key has id {0}")]
    NoKeyForId(String),
    #[error("segment {0} failed authentication (edited, reordered or wrong key)")]
    Segment(u64),
    #[error("object is truncated: it ends inside the header or without its last segment")]
    Truncated,
    #[error("too many segments for one object")]
    TooLong,
    #[error("seed-004 envelope: {0}")]
    Envelope(String),
}

/// Error from building or running a flow.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("fetching {url}: gave up after {tries} tries with {received} bytes received: {reason}")]
    Fetch {
        url: String,
        tries: u32,
        received: u64,
        reason: String,
        status: Option<u16>,
        retryable: bool,
    },
    #[error("size check: expected {expected} bytes, got {actual}")]
    Size { expected: u64, actual: u64 },
    #[error("sha256 check: expected {expected}, got {actual}")]
    Sha256 { expected: String, actual: String },
    #[error("audio check: content starts with {head}, which is not RIFF/WAVE, MP3 or OGG")]
    NotAudio { head: String },
    #[error("decrypting: {0}")]
    Crypto(#[from] CryptoError),
    #[error("{stage}: {message}")]
    Codec {
        stage: &'static str,
        message: String,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("the item's deadline passed after {received} bytes")]
    Deadline { received: u64 },
    #[error("flow is invalid: {0}")]
    Invalid(String),
    /// The script's URL function failed; `retryable` is what its error said.
    #[error("the URL function failed: {message}")]
    UrlFunction { message: String, retryable: bool },
    #[error("flow stopped: {0}")]
    Internal(String),
    /// An object without its manifest that could not be shown to hold its source's bytes.
    #[error(
        "{key} in {store} exists without its manifest, and {reason}; it was left as it is. \
         Check the object; if it is not this item's, delete it (and only it) and run again"
    )]
    Orphan {
        key: String,
        store: String,
        reason: String,
    },
}

impl FlowError {
    /// Whether trying the same flow again later may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            FlowError::Fetch { retryable, .. } | FlowError::UrlFunction { retryable, .. } => {
                *retryable
            }
            FlowError::Storage(e) => e.retryable(),
            FlowError::Deadline { .. } | FlowError::Internal(_) => true,
            _ => false,
        }
    }

    /// The HTTP status behind the error, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            FlowError::Fetch { status, .. } => *status,
            _ => None,
        }
    }
}

/// `scheme://host/path` of a URL, without query (presigned signatures) or user info.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!(
                "{}://{}{port}{}",
                u.scheme(),
                u.host_str().unwrap_or(""),
                u.path()
            )
        }
        Err(_) => "<invalid url>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_urls_drop_signatures_and_credentials() {
        let r = redact_url("https://user:pw@media.example/rec/1.wav?X-Amz-Signature=abc");
        assert_eq!(r, "https://media.example/rec/1.wav");
        assert_eq!(
            redact_url("http://127.0.0.1:8080/a?x=1"),
            "http://127.0.0.1:8080/a"
        );
    }
}
