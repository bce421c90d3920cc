//! The `ctx.api` surface as scripts use it: the verbs, JSON in and out, and HTTP errors
//! as catchable maps.

use super::{records, run_script, setup};

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
