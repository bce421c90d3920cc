//! A small parser of the Prometheus / OpenMetrics text format, strict enough to reject
//! what a scraper would: bad metric or label names, unquoted or badly escaped label
//! values, non-numeric values, samples of no declared family.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

fn is_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':');
    matches!(chars.next(), Some(c) if ok_first(c))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

/// Parses `text`; panics naming the line on any error.
pub fn parse(text: &str) -> Vec<Sample> {
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = || format!("line {}: {line:?}", i + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            match parts.next() {
                Some("TYPE") => {
                    let name = parts.next().unwrap_or_else(|| panic!("{}", at()));
                    let kind = parts.next().unwrap_or_else(|| panic!("{}", at()));
                    assert!(is_name(name, true), "bad family name at {}", at());
                    let known = [
                        "counter",
                        "gauge",
                        "histogram",
                        "summary",
                        "untyped",
                        "unknown",
                    ];
                    assert!(known.contains(&kind), "bad type at {}", at());
                    assert!(
                        families
                            .insert(name.to_string(), kind.to_string())
                            .is_none(),
                        "family declared twice at {}",
                        at()
                    );
                }
                Some("HELP") | Some("UNIT") => {
                    let name = parts.next().unwrap_or_else(|| panic!("{}", at()));
                    assert!(is_name(name, true), "bad name at {}", at());
                }
                Some("EOF") => {}
                _ => {}
            }
            continue;
        }
        assert!(!line.starts_with('#'), "bad comment at {}", at());
        samples.push(sample(line, &at));
    }
    for s in &samples {
        let declared = families.iter().any(|(family, kind)| {
            let suffixes: &[&str] = match kind.as_str() {
                "counter" => &["_total", "_created", ""],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                "summary" => &["_sum", "_count", "_created", ""],
                _ => &[""],
            };
            suffixes
                .iter()
                .any(|suf| s.name == format!("{family}{suf}"))
        });
        assert!(declared, "sample {} belongs to no declared family", s.name);
    }
    samples
}

fn sample(line: &str, at: &dyn Fn() -> String) -> Sample {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("no value at {}", at()));
    let name = &line[..name_end];
    assert!(is_name(name, true), "bad metric name at {}", at());
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let mut end = None;
        loop {
            let Some(&(start, c)) = chars.peek() else {
                panic!("unclosed labels at {}", at())
            };
            if c == '}' {
                end = end.or(Some(start));
                break;
            }
            // label name
            let mut key = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if c == '=' {
                    break;
                }
                key.push(c);
                chars.next();
            }
            assert!(is_name(&key, false), "bad label name {key:?} at {}", at());
            assert_eq!(chars.next().map(|x| x.1), Some('='), "at {}", at());
            assert_eq!(
                chars.next().map(|x| x.1),
                Some('"'),
                "unquoted value at {}",
                at()
            );
            let mut value = String::new();
            loop {
                match chars.next().map(|x| x.1) {
                    Some('"') => break,
                    Some('\\') => match chars.next().map(|x| x.1) {
                        Some('"') => value.push('"'),
                        Some('\\') => value.push('\\'),
                        Some('n') => value.push('\n'),
                        other => panic!("bad escape {other:?} at {}", at()),
                    },
                    Some(c) => value.push(c),
                    None => panic!("unterminated value at {}", at()),
                }
            }
            assert!(
                labels.insert(key, value).is_none(),
                "label twice at {}",
                at()
            );
            match chars.peek().map(|x| x.1) {
                Some(',') => {
                    chars.next();
                }
                Some('}') => {}
                _ => panic!("expected , or }} at {}", at()),
            }
        }
        let close = end.unwrap();
        rest = &after[close + 1..];
    }
    let mut fields = rest.split_whitespace();
    let value = fields
        .next()
        .unwrap_or_else(|| panic!("no value at {}", at()));
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value at {}", at())),
    };
    if let Some(ts) = fields.next() {
        ts.parse::<f64>()
            .unwrap_or_else(|_| panic!("bad timestamp at {}", at()));
    }
    assert!(fields.next().is_none(), "trailing text at {}", at());
    Sample {
        name: name.to_string(),
        labels,
        value,
    }
}

/// The value of the sample named `name` with exactly these labels.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples
        .iter()
        .find(|s| s.name == name && s.labels == want)
        .map(|s| s.value)
}

#[test]
fn the_parser_rejects_what_a_scraper_would() {
    let good = "# TYPE a counter\na_total{x=\"1\",y=\"q\\\"\"} 3\n# EOF\n";
    let s = parse(good);
    assert_eq!(value(&s, "a_total", &[("x", "1"), ("y", "q\"")]), Some(3.0));
    for bad in [
        "# TYPE a counter\na_total{x=1} 3\n",
        "# TYPE a counter\na_total{x=\"1\"} three\n",
        "# TYPE a counter\nb_total 3\n",
        "# TYPE a counter\na_total{x=\"1\" 3\n",
        "# TYPE 1a counter\n",
    ] {
        let r = std::panic::catch_unwind(|| parse(bad));
        assert!(r.is_err(), "accepted {bad:?}");
    }
}
