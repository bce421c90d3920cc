//! Operations routes: `/healthz`, `/status` (JSON), `/metrics` (Prometheus text that agrees
//! with the ledger) and `POST /pipelines/{name}/run` behind the bearer token.

use std::sync::Arc;

use cxpipe::ledger::{AdmitItem, ItemFilter, ItemState, ItemUpdate};
use cxpipe::serve::http::METRICS_CONTENT_TYPE;
use cxpipe::serve::status::StatusSnapshot;

use super::host::{FakeHost, TOKEN, serve};
use super::page::snapshot;
use super::prom;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_status_answer_what_the_host_reports() {
    let host = Arc::new(FakeHost::new(snapshot()).await);
    let base = serve(host.clone()).await;
    let client = reqwest::Client::new();
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap().trim(), "ok");
    let status = client.get(format!("{base}/status")).send().await.unwrap();
    assert_eq!(status.status(), 200);
    let got: StatusSnapshot = status.json().await.unwrap();
    assert_eq!(got, host.snapshot);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_item_counts_agree_with_the_ledger() {
    let host = Arc::new(FakeHost::new(StatusSnapshot::default()).await);
    let base = serve(host.clone()).await;
    let items: Vec<_> = (0..9)
        .map(|i| AdmitItem {
            key: format!("rec-{i}"),
            payload: "{}".into(),
        })
        .collect();
    let ledger = &host.ledger;
    ledger
        .admit("download", "acme", "run-1", "h1", i64::MAX, &items)
        .await
        .unwrap();
    ledger
        .admit("download", "beta", "run-2", "h1", i64::MAX, &items[..4])
        .await
        .unwrap();
    let updates: Vec<_> = (0..5)
        .map(|i| ItemUpdate {
            pipeline: "download".into(),
            tenant: "acme".into(),
            key: format!("rec-{i}"),
            state: ItemState::Done,
            attempts: 1,
            next_at: None,
            result: None,
            last_error: None,
            script_hash: None,
        })
        .collect();
    ledger.apply(&updates).await.unwrap();
    host.metrics.observe_run("download", "acme", 4.5);
    host.metrics.reload("download", true);

    let response = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(content_type, METRICS_CONTENT_TYPE);
    let samples = prom::parse(&response.text().await.unwrap());

    for (pipeline, tenant) in &host.pairs {
        let filter = ItemFilter {
            pipeline: Some(pipeline.clone()),
            tenant: Some(tenant.clone()),
            ..ItemFilter::default()
        };
        let counts = ledger.count_items(&filter).await.unwrap();
        for state in ItemState::ALL {
            let in_ledger = counts
                .iter()
                .find(|(s, _)| s == state.as_str())
                .map_or(0, |(_, n)| *n);
            let labels = [
                ("pipeline", pipeline.as_str()),
                ("tenant", tenant.as_str()),
                ("state", state.as_str()),
            ];
            let exported = prom::value(&samples, "cxpipe_items", &labels);
            assert_eq!(
                exported,
                Some(in_ledger as f64),
                "{pipeline} {tenant} {state:?}"
            );
        }
    }
    let done = [
        ("pipeline", "download"),
        ("tenant", "acme"),
        ("state", "done"),
    ];
    assert_eq!(prom::value(&samples, "cxpipe_items", &done), Some(5.0));
    let run = [("pipeline", "download"), ("tenant", "acme")];
    assert_eq!(
        prom::value(&samples, "cxpipe_run_duration_seconds_count", &run),
        Some(1.0)
    );
    assert_eq!(
        prom::value(&samples, "cxpipe_run_duration_seconds_sum", &run),
        Some(4.5)
    );
    let reload = [("pipeline", "download"), ("outcome", "ok")];
    assert_eq!(
        prom::value(&samples, "cxpipe_reloads_total", &reload),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_now_requires_the_bearer_token_and_refuses_a_second_live_run() {
    let host = Arc::new(FakeHost::new(StatusSnapshot::default()).await);
    let base = serve(host.clone()).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/pipelines/download/run?tenant=acme");
    let post = |url: &str, token: Option<&str>| {
        let request = client.post(url);
        match token {
            Some(t) => request.header("Authorization", format!("Bearer {t}")),
            None => request,
        }
    };
    for token in [None, Some("wrong"), Some("run-now-token-"), Some("")] {
        let response = post(&url, token).send().await.unwrap();
        assert_eq!(response.status(), 401, "{token:?}");
    }
    assert!(
        host.live.lock().unwrap().is_empty(),
        "nothing started without the token"
    );
    let started = post(&url, Some(TOKEN)).send().await.unwrap();
    assert_eq!(started.status(), 202);
    let busy = post(&url, Some(TOKEN)).send().await.unwrap();
    assert_eq!(busy.status(), 409);
    let unknown = post(
        &format!("{base}/pipelines/nope/run?tenant=acme"),
        Some(TOKEN),
    );
    assert_eq!(unknown.send().await.unwrap().status(), 404);
    let no_tenant = post(&format!("{base}/pipelines/download/run"), Some(TOKEN));
    assert_eq!(no_tenant.send().await.unwrap().status(), 400);
    assert_eq!(
        *host.live.lock().unwrap(),
        [("download".to_string(), "acme".to_string())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_now_is_refused_when_no_token_is_configured() {
    let mut host = FakeHost::new(StatusSnapshot::default()).await;
    host.token = None;
    let host = Arc::new(host);
    let base = serve(host.clone()).await;
    let response = reqwest::Client::new()
        .post(format!("{base}/pipelines/download/run?tenant=acme"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(host.live.lock().unwrap().is_empty());
}
