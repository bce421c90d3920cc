//! Serde for durations in simulator knobs: written as humantime strings (`"90s"`, `"5m"`),
//! read from such strings or from a plain number of seconds (fractions allowed).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&humantime::format_duration(*value).to_string())
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(f64),
        Text(String),
    }
    match Raw::deserialize(deserializer)? {
        Raw::Seconds(secs) if secs.is_finite() && secs >= 0.0 => Ok(Duration::from_secs_f64(secs)),
        Raw::Seconds(secs) => Err(D::Error::custom(format!("invalid duration {secs}"))),
        Raw::Text(text) => humantime::parse_duration(&text)
            .map_err(|err| D::Error::custom(format!("invalid duration {text:?}: {err}"))),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Holder {
        #[serde(with = "super")]
        d: Duration,
    }

    #[test]
    fn reads_numbers_and_humantime_and_writes_humantime() {
        let a: Holder = serde_json::from_str(r#"{"d": 1.5}"#).unwrap();
        assert_eq!(a.d, Duration::from_millis(1500));
        let b: Holder = serde_json::from_str(r#"{"d": "2m"}"#).unwrap();
        assert_eq!(b.d, Duration::from_secs(120));
        assert_eq!(serde_json::to_string(&b).unwrap(), r#"{"d":"2m"}"#);
        assert!(serde_json::from_str::<Holder>(r#"{"d": -1}"#).is_err());
    }
}
