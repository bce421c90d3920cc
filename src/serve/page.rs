//! The status page at `GET /`: plain server-rendered HTML of a [`StatusSnapshot`], readable
//! without JavaScript. Every value from the snapshot is escaped.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};

use super::status::{NodeStatus, PipelineStatus, RunCounts, StatusSnapshot};

const STYLE: &str = "body{font-family:sans-serif;margin:2em}\
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;\
vertical-align:top}.error{color:#a00;white-space:pre-wrap;margin:0}.none{color:#888}";

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn time(t: &Option<DateTime<Utc>>) -> String {
    match t {
        Some(t) => escape(&t.to_rfc3339_opts(SecondsFormat::Secs, true)),
        None => "<span class=\"none\">-</span>".into(),
    }
}

fn counts(c: &RunCounts) -> String {
    c.labelled()
        .iter()
        .map(|(label, n)| format!("{label} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn row(out: &mut String, p: &PipelineStatus) {
    let hash = p
        .script_hash
        .as_deref()
        .map(|h| escape(&h.chars().take(12).collect::<String>()))
        .unwrap_or_else(|| "<span class=\"none\">-</span>".into());
    let running = match &p.running {
        Some(r) => format!(
            "{} since {}<br>{}",
            escape(&r.run_id),
            time(&Some(r.started_at)),
            counts(&r.counts)
        ),
        None => "<span class=\"none\">idle</span>".into(),
    };
    let last = match &p.last_run {
        Some(r) => format!(
            "<b>{}</b> {} at {}{}<br>{}{}",
            escape(&r.status),
            escape(&r.run_id),
            time(&Some(r.started_at)),
            r.duration_ms
                .map(|ms| format!(", {:.1} s", ms as f64 / 1000.0))
                .unwrap_or_default(),
            counts(&r.counts),
            r.error
                .as_deref()
                .map(|e| format!("<pre class=\"error\">{}</pre>", escape(e)))
                .unwrap_or_default()
        ),
        None => "<span class=\"none\">never ran</span>".into(),
    };
    let error = match &p.reload_error {
        Some(e) => format!("<pre class=\"error\">{}</pre>", escape(e)),
        None => "<span class=\"none\">-</span>".into(),
    };
    let _ = writeln!(
        out,
        "<tr><td>{}</td><td>{}</td><td><code>{hash}</code></td><td>{}</td><td>{running}</td>\
         <td>{last}</td><td>{error}</td></tr>",
        escape(&p.pipeline),
        escape(&p.tenant),
        time(&p.next_fire),
    );
}

/// The whole page.
pub fn render(snapshot: &StatusSnapshot) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>cxpipe status</title><style>{STYLE}</style></head><body>\n\
         <h1>cxpipe status</h1>\n<p>version {} &middot; started {}</p>\n",
        escape(&snapshot.version),
        time(&snapshot.started_at),
    );
    if snapshot.pipelines.is_empty() {
        out.push_str("<p>No pipelines are configured.</p>\n");
    } else {
        out.push_str(
            "<table>\n<tr><th>Pipeline</th><th>Tenant</th><th>Script</th><th>Next fire</th>\
             <th>Running</th><th>Last run</th><th>Reload error</th></tr>\n",
        );
        for p in &snapshot.pipelines {
            row(&mut out, p);
        }
        out.push_str("</table>\n");
    }
    if !snapshot.nodes.is_empty() {
        nodes(&mut out, snapshot);
    }
    out.push_str("</body></html>\n");
    out
}

/// The cluster's nodes: this one marked, each with its heartbeat age, drain mark, leases
/// and runs.
fn nodes(out: &mut String, snapshot: &StatusSnapshot) {
    out.push_str(
        "<h2>Nodes</h2>\n<table>\n<tr><th>Node</th><th>Listen</th><th>Version</th>\
         <th>Heartbeat</th><th>State</th><th>Leases</th><th>Runs</th></tr>\n",
    );
    for n in &snapshot.nodes {
        let NodeStatus {
            node,
            listen,
            version,
            heartbeat_age_secs,
            draining,
            leases,
            runs,
            ..
        } = n;
        let me = if snapshot.node.as_deref() == Some(node.as_str()) {
            " (this node)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "<tr><td>{}{me}</td><td>{}</td><td>{}</td><td>{heartbeat_age_secs:.1} s ago</td>\
             <td>{}</td><td>{leases}</td><td>{runs}</td></tr>",
            escape(node),
            escape(listen.as_deref().unwrap_or("-")),
            escape(version),
            if *draining { "draining" } else { "serving" },
        );
    }
    out.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::status::LastRun;

    #[test]
    fn values_are_escaped() {
        let snapshot = StatusSnapshot {
            version: "0.1".into(),
            pipelines: vec![PipelineStatus {
                pipeline: "<script>alert(1)</script>".into(),
                tenant: "a&b".into(),
                reload_error: Some("x.rhai:3:7: expected '\"'".into()),
                ..PipelineStatus::default()
            }],
            ..StatusSnapshot::default()
        };
        let html = render(&snapshot);
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("a&amp;b"));
        assert!(html.contains("x.rhai:3:7: expected &#39;&quot;&#39;"));
    }

    #[test]
    fn the_last_run_shows_its_status_counts_and_duration() {
        let snapshot = StatusSnapshot {
            pipelines: vec![PipelineStatus {
                pipeline: "download".into(),
                tenant: "acme".into(),
                last_run: Some(LastRun {
                    run_id: "run-9".into(),
                    status: "completed".into(),
                    started_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
                    finished_at: None,
                    duration_ms: Some(2500),
                    counts: RunCounts {
                        done: 12,
                        failed: 1,
                        ..RunCounts::default()
                    },
                    error: None,
                }),
                ..PipelineStatus::default()
            }],
            ..StatusSnapshot::default()
        };
        let html = render(&snapshot);
        assert!(html.contains("<b>completed</b> run-9"), "{html}");
        assert!(
            html.contains("done 12, skipped 0, deferred 0, failed 1"),
            "{html}"
        );
        assert!(html.contains(", 2.5 s"), "{html}");
        assert!(html.contains("2027-01-15T08:00:00Z"), "{html}");
    }

    #[test]
    fn a_cluster_node_lists_the_nodes_and_marks_itself() {
        let snapshot = StatusSnapshot {
            node: Some("vm:12".into()),
            nodes: vec![
                NodeStatus {
                    node: "vm:12".into(),
                    heartbeat_age_secs: 0.4,
                    leases: 7,
                    runs: 1,
                    ..NodeStatus::default()
                },
                NodeStatus {
                    node: "vm:<13>".into(),
                    heartbeat_age_secs: 42.0,
                    draining: true,
                    ..NodeStatus::default()
                },
            ],
            ..StatusSnapshot::default()
        };
        let html = render(&snapshot);
        assert!(html.contains("<td>vm:12 (this node)</td>"), "{html}");
        assert!(
            html.contains("0.4 s ago</td><td>serving</td><td>7</td><td>1</td>"),
            "{html}"
        );
        assert!(html.contains("<td>vm:&lt;13&gt;</td>"), "{html}");
        assert!(html.contains("42.0 s ago</td><td>draining</td>"), "{html}");
        let alone = render(&StatusSnapshot::default());
        assert!(!alone.contains("Nodes"), "{alone}");
    }

    #[test]
    fn a_failed_run_shows_why_escaped() {
        let snapshot = StatusSnapshot {
            pipelines: vec![PipelineStatus {
                pipeline: "download".into(),
                tenant: "beta".into(),
                last_run: Some(LastRun {
                    run_id: "run-3".into(),
                    status: "failed".into(),
                    started_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
                    finished_at: None,
                    duration_ms: Some(100),
                    counts: RunCounts::default(),
                    error: Some("tenant beta: token refused <invalid_client>".into()),
                }),
                ..PipelineStatus::default()
            }],
            ..StatusSnapshot::default()
        };
        let html = render(&snapshot);
        assert!(
            html.contains(
                "<pre class=\"error\">tenant beta: token refused &lt;invalid_client&gt;</pre>"
            ),
            "{html}"
        );
    }
}
