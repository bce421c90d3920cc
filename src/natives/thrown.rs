//! The one place that builds the error map scripts catch. Every native failure (API,
//! flow, storage, time) reaches a script's `catch (e)` as the same map:
//! `#{ message, status, retryable, request_id }`, with `status` and `request_id` `()` when
//! absent, plus fields a kind of failure adds (a download's `bytes_received`).

use rhai::{Dynamic, EvalAltResult, Map, Position};

/// A failure as a script sees it.
#[derive(Clone, Debug)]
pub struct Thrown {
    /// What failed and why, naming the thing and the fix.
    pub message: String,
    /// The HTTP status, when a server answered.
    pub status: Option<u16>,
    /// Whether trying the item again may succeed.
    pub retryable: bool,
    /// The server's request id, when it sent one.
    pub request_id: Option<String>,
    /// Extra fields of this kind of failure (e.g. `bytes_received`).
    pub extra: Vec<(&'static str, Dynamic)>,
}

impl Thrown {
    /// A failure with only a message; not retryable.
    pub fn new(message: impl Into<String>) -> Thrown {
        Thrown {
            message: message.into(),
            status: None,
            retryable: false,
            request_id: None,
            extra: Vec::new(),
        }
    }

    /// Sets whether the failure is worth a retry.
    pub fn retryable(mut self, retryable: bool) -> Thrown {
        self.retryable = retryable;
        self
    }

    /// Sets the HTTP status.
    pub fn status(mut self, status: Option<u16>) -> Thrown {
        self.status = status;
        self
    }

    /// Sets the server's request id.
    pub fn request_id(mut self, request_id: Option<&str>) -> Thrown {
        self.request_id = request_id.map(str::to_string);
        self
    }

    /// Adds a field of this kind of failure.
    pub fn with(mut self, field: &'static str, value: impl Into<Dynamic>) -> Thrown {
        self.extra.push((field, value.into()));
        self
    }

    /// The map scripts catch.
    pub fn to_map(&self) -> Map {
        let mut map = Map::new();
        map.insert("message".into(), self.message.clone().into());
        map.insert(
            "status".into(),
            self.status
                .map_or(Dynamic::UNIT, |s| Dynamic::from(i64::from(s))),
        );
        map.insert("retryable".into(), self.retryable.into());
        map.insert(
            "request_id".into(),
            self.request_id.clone().map_or(Dynamic::UNIT, Dynamic::from),
        );
        for (field, value) in &self.extra {
            map.insert((*field).into(), value.clone());
        }
        map
    }
}

impl From<Thrown> for Box<EvalAltResult> {
    fn from(thrown: Thrown) -> Self {
        Box::new(EvalAltResult::ErrorRuntime(
            Dynamic::from_map(thrown.to_map()),
            Position::NONE,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_has_the_four_fields_and_its_extras() {
        let map = Thrown::new("boom").to_map();
        assert_eq!(map["message"].clone().into_string().unwrap(), "boom");
        assert!(map["status"].is_unit() && map["request_id"].is_unit());
        assert!(!map["retryable"].as_bool().unwrap());
        let map = Thrown::new("x")
            .status(Some(503))
            .retryable(true)
            .request_id(Some("r-1"))
            .with("bytes_received", 7_i64)
            .to_map();
        assert_eq!(map["status"].as_int().unwrap(), 503);
        assert!(map["retryable"].as_bool().unwrap());
        assert_eq!(map["request_id"].clone().into_string().unwrap(), "r-1");
        assert_eq!(map["bytes_received"].as_int().unwrap(), 7);
    }
}
