//! Every pagination style walks a 10,007-record collection exactly once while each page
//! request fails twice first; pages are fetched lazily; a page that fails past the retry
//! cap is re-requested (not restarted) by the next call; a million records stream through
//! one page at a time.

use std::sync::atomic::Ordering::SeqCst;

use cxpipe::api::pages::Pages;
use cxpipe::api::paginate::{PageSpec, Pager};
use serde_json::json;

use super::server::Behaviour;
use super::{records, run_script, setup};

const RECORDS: u64 = 10_007;

/// Walks `options` over a collection whose every page fails twice first, in Rhai, and
/// checks each record came exactly once.
async fn walk_exactly_once(path: &str, options: &str) {
    let behaviour = Behaviour {
        page_failures: 2,
        ..records(RECORDS)
    };
    let s = setup(behaviour).await;
    let script = format!(
        r#"
        let ids = [];
        for rec in api.paginate("{path}", {options}) {{ ids.push(rec.id); }}
        ids
        "#
    );
    let ids: rhai::Array = run_script(&s.api, &script).await.unwrap();
    let mut ids: Vec<i64> = ids.into_iter().map(|d| d.as_int().unwrap()).collect();
    assert_eq!(ids.len() as u64, RECORDS, "{options}");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len() as u64, RECORDS, "duplicates with {options}");
    assert_eq!((ids[0], *ids.last().unwrap()), (0, RECORDS as i64 - 1));
    // 101 pages, each tried three times; offset-like styles may end on an empty page.
    let requests = s.server.state.api_requests.load(SeqCst);
    assert!(
        (303..=306).contains(&requests),
        "{requests} requests with {options}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_limit() {
    walk_exactly_once(
        "/records",
        r#"#{ style: "offset", items: "items", size: 100, total: "total" }"#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_top() {
    walk_exactly_once(
        "/records",
        r#"#{ style: "skip_top", items: "completedContacts", size: 100 }"#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_and_page_size_in_the_query() {
    walk_exactly_once(
        "/records",
        r#"#{ style: "page", items: "data", size: 100 }"#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_and_page_size_in_a_post_body() {
    walk_exactly_once(
        "/records/search",
        r#"#{ style: "page", method: "POST", body: #{ filters: [#{ field: "status", value: "Available" }] },
             items: "data", size: 100 }"#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_in_the_query() {
    walk_exactly_once(
        "/records",
        r#"#{ style: "cursor", items: "data", next: "meta.nextPageToken", param: "pageToken",
             size_param: "pageSize", size: 100 }"#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_in_a_nested_body_field() {
    walk_exactly_once(
        "/records/search",
        r#"#{ style: "cursor", method: "POST", body: #{ filters: [#{ field: "status", value: "Available" }] },
             items: "interactions", next: "pagination.next_page", param: "pagination.page_token",
             size_param: "pageSize", size: 100 }"#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_link_urls() {
    walk_exactly_once(
        "/records",
        r#"#{ style: "next_link", query: #{ skip: 0, top: 100, style: "link" }, items: "completedContacts" }"#,
    )
    .await;
}

fn spec(value: serde_json::Value) -> PageSpec {
    serde_json::from_value(value).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_fetched_only_when_the_loop_needs_them() {
    let s = setup(records(1000)).await;
    let pager = Pager::new(
        &s.api,
        "/records",
        &spec(json!({"style": "offset", "items": "items", "size": 10})),
    )
    .unwrap();
    assert_eq!(
        s.server.state.api_requests.load(SeqCst),
        0,
        "nothing sent before the loop"
    );
    let taken = tokio::task::spawn_blocking(move || {
        Pages::new(pager)
            .into_iter()
            .take(15)
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
            .len()
    })
    .await
    .unwrap();
    assert_eq!(taken, 15);
    assert_eq!(s.server.state.api_requests.load(SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_failing_past_the_retry_cap_is_requested_again_not_restarted() {
    let behaviour = Behaviour {
        page_failures: 5, // max_retries = 4: the first call for each page gives up
        ..records(250)
    };
    let s = setup(behaviour).await;
    let mut pager = Pager::new(
        &s.api,
        "/records",
        &spec(json!({"style": "offset", "items": "items", "size": 100})),
    )
    .unwrap();
    let ids = |items: Vec<serde_json::Value>| (items[0]["id"].as_u64().unwrap(), items.len());
    assert_eq!(pager.next_page().await.unwrap_err().status(), Some(503));
    assert_eq!(ids(pager.next_page().await.unwrap().unwrap()), (0, 100));
    assert!(pager.next_page().await.is_err());
    assert_eq!(ids(pager.next_page().await.unwrap().unwrap()), (100, 100));
    assert!(pager.next_page().await.is_err());
    assert_eq!(ids(pager.next_page().await.unwrap().unwrap()), (200, 50));
    assert_eq!(pager.next_page().await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeating_cursor_is_an_error_not_an_endless_loop() {
    let s = setup(records(1000)).await;
    // A server whose "next token" never moves: `total` used as the cursor.
    let options = json!({"style": "cursor", "items": "items", "next": "total", "param": "offset",
                         "query": {"offset": 0, "limit": 10}});
    let mut pager = Pager::new(&s.api, "/records", &spec(options)).unwrap();
    assert!(pager.next_page().await.is_ok());
    let err = pager.next_page().await.unwrap_err();
    assert!(err.to_string().contains("did not advance"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_records_stream_one_page_at_a_time() {
    let s = setup(records(1_000_000)).await;
    let pager = Pager::new(
        &s.api,
        "/records",
        &spec(json!({"style": "offset", "items": "items", "size": 2000})),
    )
    .unwrap();
    let (count, max_buffered) = tokio::task::spawn_blocking(move || {
        let mut iter = Pages::new(pager).into_iter();
        let (mut count, mut max_buffered) = (0u64, 0usize);
        while let Some(item) = iter.next() {
            let _record = item.unwrap();
            count += 1;
            max_buffered = max_buffered.max(iter.buffered());
        }
        (count, max_buffered)
    })
    .await
    .unwrap();
    assert_eq!(count, 1_000_000);
    assert!(max_buffered < 2000, "{max_buffered}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_and_max_pages_bound_the_walk() {
    let s = setup(records(1000)).await;
    let options =
        json!({"style": "offset", "items": "items", "size": 100, "start": 50, "max_pages": 2});
    let mut pager = Pager::new(&s.api, "/records", &spec(options)).unwrap();
    let first = pager.next_page().await.unwrap().unwrap();
    let second = pager.next_page().await.unwrap().unwrap();
    assert_eq!(
        (first[0]["id"].as_u64(), second[99]["id"].as_u64()),
        (Some(50), Some(249))
    );
    assert_eq!(pager.next_page().await.unwrap(), None);
    assert_eq!(
        (pager.pages(), s.server.state.api_requests.load(SeqCst)),
        (2, 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_items_field_is_an_empty_page_and_a_wrong_one_an_error() {
    let s = setup(records(10)).await;
    let options = json!({"style": "offset", "items": "nowhere", "size": 5});
    let mut pager = Pager::new(&s.api, "/records", &spec(options)).unwrap();
    assert_eq!(pager.next_page().await.unwrap(), Some(vec![]));
    assert_eq!(
        pager.next_page().await.unwrap(),
        None,
        "a short page ends the walk"
    );
    let options = json!({"style": "offset", "items": "total", "size": 5});
    let mut pager = Pager::new(&s.api, "/records", &spec(options)).unwrap();
    let err = pager.next_page().await.unwrap_err();
    assert!(err.to_string().contains("not an array"), "{err}");
}
