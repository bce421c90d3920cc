//! `POST /hooks/{tenant}/{pipeline}`: forged, stale, unsigned, malformed, oversized and
//! replayed requests are refused (no detail in the answer) and counted; a valid event is
//! recorded, acknowledged and handed over once, however often it is delivered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cxpipe::serve::status::StatusSnapshot;

use super::host::{FakeHost, MAX_BODY, SECRET, now_secs, serve, sign, signed_post, wait_until};
use super::prom;

async fn setup() -> (Arc<FakeHost>, String, reqwest::Client) {
    let host = Arc::new(FakeHost::new(StatusSnapshot::default()).await);
    let base = serve(host.clone()).await;
    (host, base, reqwest::Client::new())
}

fn event(id: &str) -> String {
    serde_json::json!({
        "eventId": id,
        "eventType": "media.recording.created",
        "recordingId": format!("rec-{id}"),
    })
    .to_string()
}

async fn webhook_count(base: &str, client: &reqwest::Client, outcome: &str) -> f64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let labels = [
        ("tenant", "acme"),
        ("pipeline", "download"),
        ("outcome", outcome),
    ];
    prom::value(
        &prom::parse(&text),
        "cxpipe_webhook_requests_total",
        &labels,
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_event_delivered_twice_is_acknowledged_twice_and_handed_over_once() {
    let (host, base, client) = setup().await;
    let url = format!("{base}/hooks/acme/download");
    let body = event("evt-1");
    let first = signed_post(&client, &url, SECRET, now_secs(), &body)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 202);
    // The duplicate is signed anew, as a retrying sender does.
    let second = signed_post(&client, &url, SECRET, now_secs(), &body)
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 200);
    wait_until("the event is marked handed", || async {
        let left = host.ledger.unhanded_events("acme", "download", 10).await;
        left.unwrap().is_empty()
    })
    .await;
    // The same id for the other tenant is another event.
    let other = signed_post(
        &client,
        &format!("{base}/hooks/beta/download"),
        SECRET,
        now_secs(),
        &body,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(other.status(), 202);
    wait_until("beta's event is handed", || async {
        host.handed().len() == 2
    })
    .await;
    let handed = host.handed();
    assert_eq!(
        handed,
        [
            ("acme".into(), "download".into(), "evt-1".into()),
            ("beta".into(), "download".into(), "evt-1".into())
        ]
    );
    assert_eq!(webhook_count(&base, &client, "accepted").await, 1.0);
    assert_eq!(webhook_count(&base, &client, "replayed").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_without_detail_and_counted() {
    let (host, base, client) = setup().await;
    let url = format!("{base}/hooks/acme/download");
    let now = now_secs();
    let body = event("evt-bad");
    let unsigned = client.post(&url).body(body.clone());
    // Stale and future stamps are well outside the 300 s tolerance: a loaded machine can
    // take seconds between building a request and the server reading its clock. The edges
    // are unit tests of the verifier.
    let mut cases = vec![
        (
            "forged",
            signed_post(&client, &url, "not-the-secret", now, &body),
            401,
        ),
        (
            "stale",
            signed_post(&client, &url, SECRET, now - 600, &body),
            401,
        ),
        (
            "future",
            signed_post(&client, &url, SECRET, now + 600, &body),
            401,
        ),
        ("unsigned", unsigned, 401),
        (
            "no event id",
            signed_post(&client, &url, SECRET, now, "{\"x\":1}"),
            400,
        ),
    ];
    // The body differs from the one signed.
    let ts = now.to_string();
    let tampered = client
        .post(&url)
        .header("Nice-Request-Timestamp", &ts)
        .header("X-Nice-Signature", sign(SECRET, &ts, &body))
        .body(event("evt-other"));
    cases.push(("tampered", tampered, 401));
    // Over the cap, declared up front.
    let big = format!(
        "{{\"eventId\":\"big\",\"pad\":\"{}\"}}",
        "x".repeat(MAX_BODY)
    );
    cases.push((
        "oversized",
        signed_post(&client, &url, SECRET, now, &big),
        413,
    ));
    // Over the cap, streamed without a length.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|_| Ok(vec![b' '; MAX_BODY / 4])).collect();
    let streamed = client
        .post(&url)
        .header("Nice-Request-Timestamp", &ts)
        .header("X-Nice-Signature", sign(SECRET, &ts, "irrelevant"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)));
    cases.push(("streamed oversized", streamed, 413));

    let mut wrong = Vec::new();
    for (what, request, status) in cases {
        let response = request.send().await.unwrap();
        let got = response.status();
        let text = response.text().await.unwrap();
        if got != status || !text.is_empty() {
            wrong.push(format!(
                "{what}: {got} {text:?}, expected {status} and no detail"
            ));
        }
    }
    assert!(wrong.is_empty(), "wrong answers:\n{}", wrong.join("\n"));

    assert_eq!(webhook_count(&base, &client, "bad_signature").await, 2.0);
    assert_eq!(webhook_count(&base, &client, "stale").await, 2.0);
    assert_eq!(webhook_count(&base, &client, "unsigned").await, 1.0);
    assert_eq!(webhook_count(&base, &client, "malformed").await, 1.0);
    assert_eq!(webhook_count(&base, &client, "too_large").await, 2.0);
    assert_eq!(webhook_count(&base, &client, "accepted").await, 0.0);
    assert!(host.handed().is_empty());
    assert!(
        host.ledger
            .unhanded_events("acme", "download", 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A pipeline that takes no webhooks is not found.
    let response = signed_post(
        &client,
        &format!("{base}/hooks/acme/transcripts"),
        SECRET,
        now,
        &body,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 404);
}

/// The acknowledgement follows the durable write: p99 over 200 sequential deliveries on
/// loopback. The issue asks for under 50 ms; a shared CI machine gets a generous bound and
/// the measured value is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_events_are_acknowledged_quickly() {
    let (host, base, client) = setup().await;
    let url = format!("{base}/hooks/acme/download");
    let mut latencies = Vec::with_capacity(200);
    for i in 0..200 {
        let body = event(&format!("evt-{i}"));
        let request = signed_post(&client, &url, SECRET, now_secs(), &body);
        let start = Instant::now();
        let response = request.send().await.unwrap();
        latencies.push(start.elapsed());
        assert_eq!(response.status(), 202);
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100 - 1];
    let p50 = latencies[latencies.len() / 2];
    let line = format!("\nwebhook ack latency over 200 deliveries: p50 {p50:?}, p99 {p99:?}\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");
    wait_until("all 200 events are handed", || async {
        host.handed().len() == 200
    })
    .await;
}
