//! The `ctx.api` surface as scripts use it: the verbs, JSON in and out, and HTTP errors
//! as catchable maps.

use super::{records, run_script, run_script_with, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbs_send_json_and_return_maps() {
    let s = setup(records(5)).await;
    let script = r#"
        let page = api.get("/records", #{ offset: 1, limit: 2 });
        let out = [api.tenant, page.items.len(), page.items[0].id, page.total];
        let body = #{ n: 1, tags: ["a"] };
        for r in [api.post("/echo", body), api.put("/echo", body), api.patch("/echo", body)] {
            out.push(`${r.method}:${r.body.n}:${r.body.tags[0]}`);
        }
        out.push(api.delete("/echo").method);
        out
    "#;
    let out: rhai::Array = run_script(&s.api, script).await.unwrap();
    let out: Vec<String> = out.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        out,
        [
            "acme",
            "2",
            "1",
            "5",
            "POST:1:a",
            "PUT:1:a",
            "PATCH:1:a",
            "DELETE"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_are_catchable_maps() {
    let s = setup(records(5)).await;
    let script = r#"
        let out = "no error";
        try {
            api.get("/no/such/route");
        } catch (e) {
            out = `${e.status}|${e.retryable}|${e.request_id == ()}|${e.message}`;
        }
        out
    "#;
    let out: String = run_script(&s.api, script).await.unwrap();
    assert!(
        out.starts_with("404|false|true|tenant acme: GET /no/such/route"),
        "{out}"
    );
}

/// Ids a hostile server might hand out; each must reach the server as one segment.
const HOSTILE_IDS: [&str; 7] = [
    "new\nline",
    "a#frag",
    "x?x=1&channel=evil",
    "back\\slash",
    "nul\0byte",
    "../../api/v2/download",
    "sp ace/%2F",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn array_paths_send_each_segment_encoded_as_one() {
    let s = setup(records(0)).await;
    let long = "é".repeat(2500) + "x".repeat(2500).as_str();
    let mut ids: Vec<String> = HOSTILE_IDS.iter().map(|s| s.to_string()).collect();
    ids.push(long.clone());
    let script = r#"
        let out = [];
        for id in ids {
            out.push(api.get(["paths", id, "download"], #{ channel: "combined" }).seen);
        }
        for r in [api.post(["paths", 7], #{}), api.put(["paths", 7], #{}),
                  api.patch(["paths", 7], #{}), api.delete(["paths", 7])] {
            out.push(`${r.method} ${r.seen}`);
        }
        out.push(path_segment("a/b?c#d"));
        out.push(path_segment(42));
        out
    "#;
    let ids_rhai: rhai::Array = ids.iter().map(|id| id.clone().into()).collect();
    let out: Vec<String> = run_script_with::<rhai::Array>(&s.api, script, ("ids", ids_rhai))
        .await
        .unwrap()
        .iter()
        .map(|d: &rhai::Dynamic| d.to_string())
        .collect();
    let mut expected: Vec<String> = ids
        .iter()
        .map(|id| format!("/paths/{}/download?channel=combined", encode(id)))
        .collect();
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        expected.push(format!("{method} /paths/7"));
    }
    expected.push("a%2Fb%3Fc%23d".into());
    expected.push("42".into());
    assert_eq!(out, expected);
    assert_eq!(
        out[0], "/paths/new%0Aline/download?channel=combined",
        "the newline is encoded, not dropped"
    );
    assert_eq!(
        s.server.state.raw_paths.lock().unwrap().len(),
        ids.len() + 4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_and_dot_segments_are_refused_before_sending() {
    let s = setup(records(0)).await;
    for name in ["..", ".", ""] {
        let segment = format!("\"{name}\"");
        // The message sits in the error map, so its quotes are shown escaped.
        let shown = format!("\\\"{name}\\\" cannot be a path segment");
        for call in [
            format!("api.get([\"paths\", {segment}, \"x\"])"),
            format!("api.paginate([\"paths\", {segment}], #{{ style: \"page\" }})"),
            format!("api.poll([\"paths\", {segment}], #{{ done: [\"X\"] }})"),
            format!("path_segment({segment})"),
        ] {
            let err = run_script::<rhai::Dynamic>(&s.api, &call)
                .await
                .unwrap_err();
            assert!(err.contains(&shown), "{call}: {err}");
        }
    }
    let err = run_script::<rhai::Dynamic>(&s.api, "api.get([\"paths\", 1.5])")
        .await
        .unwrap_err();
    assert!(err.contains("string or an integer"), "{err}");
    assert!(s.server.state.raw_paths.lock().unwrap().is_empty());
}

/// RFC 3986 unreserved characters kept, every other byte `%XX` — written independently of
/// the implementation.
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pagination_options_are_reported() {
    let s = setup(records(5)).await;
    let err = run_script::<i64>(
        &s.api,
        r#"api.paginate("/records", #{ style: "cursor" }); 1"#,
    )
    .await
    .unwrap_err();
    assert!(err.contains("needs `next`"), "{err}");
    let err = run_script::<i64>(
        &s.api,
        r#"api.paginate("/records", #{ style: "sideways" }); 1"#,
    )
    .await
    .unwrap_err();
    assert!(err.contains("sideways"), "{err}");
}
