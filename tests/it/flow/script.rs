//! The script surface without HTTP: JSON sources, checks, receipts, manifests, stores,
//! no-overwrite and nothing-partial guarantees.

use std::time::{Duration, Instant};

use cxpipe::storage::Store;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_encrypted_round_trip_with_manifest_and_meta() {
    let uri = memory_uri();
    let script = format!(
        r#"
        let s = storage("{uri}");
        let rows = [#{{ id: 1, agent: "a" }}, #{{ id: 2, agent: "b" }}];
        let w = from_jsonl(rows).meta(#{{ interaction_id: "i-1" }}).md5().gzip(6).encrypt("k").write(s, "b/1.jsonl.gz.enc");
        let back = read(s, "b/1.jsonl.gz.enc").decrypt("k").discard();
        #{{ w: w, back: back, list: s.list("b/"), manifest: s.read_json("b/1.jsonl.gz.enc.manifest.json") }}
        "#
    );
    let out = receipt(engine(), script).await;
    let w = out["w"].clone().cast::<Map>();
    let expected = "{\"agent\":\"a\",\"id\":1}\n{\"agent\":\"b\",\"id\":2}\n";
    assert_eq!(get_str(&w, "sha256"), sha256_hex(expected.as_bytes()));
    assert_eq!(get_str(&w, "encrypted_with"), "k");
    assert_ne!(get_str(&w, "stored_sha256"), get_str(&w, "sha256"));
    let back = out["back"].clone().cast::<Map>();
    assert_eq!(get_int(&back, "bytes_read"), get_int(&w, "bytes_stored"));
    assert_eq!(out["list"].to_string(), "[\"b/1.jsonl.gz.enc\"]");
    let m = out["manifest"].clone().cast::<Map>();
    assert_eq!(m["format"].to_string(), "cxpipe.manifest/1");
    assert_eq!(m["transforms"].to_string(), "[\"gzip(6)\", \"encrypt(k)\"]");
    let source = m["source"].clone().cast::<Map>();
    assert_eq!(source["interaction_id"].to_string(), "i-1");
    assert_eq!(source["kind"].to_string(), "jsonl");
    let enc = m["encryption"].clone().cast::<Map>();
    assert_eq!(enc["key_name"].to_string(), "k");
    assert!(
        !format!("{m:?}").contains("4242"),
        "key material in manifest"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_the_same_key_twice_does_not_overwrite() {
    let uri = memory_uri();
    let script = format!(
        r#"
        let s = storage("{uri}");
        let a = from_json(#{{ v: 1 }}).write(s, "x.json");
        let b = from_json(#{{ v: 2 }}).write(s, "x.json");
        #{{ a: a, b: b, now: s.read_json("x.json"), size: s.size("x.json"), none: s.size("nope"), ex: s.exists("x.json") }}
        "#
    );
    let out = receipt(engine(), script).await;
    let b = out["b"].clone().cast::<Map>();
    assert!(b["existed"].as_bool().unwrap());
    assert!(!out["a"].clone().cast::<Map>()["existed"].as_bool().unwrap());
    assert_eq!(out["now"].clone().cast::<Map>()["v"].as_int().unwrap(), 1);
    assert_eq!(out["size"].as_int().unwrap(), 7);
    assert_eq!(out["none"].as_int().unwrap(), -1);
    assert!(out["ex"].as_bool().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_failing_midway_leaves_nothing_visible_on_fs() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("fs://{}", dir.path().join("out").display());
    let script = format!(
        r#"
        let s = storage("{uri}");
        let big = "";
        big.pad(3000000, "y");
        from_json(big).expect_size(2000000).write(s, "big.json")
        "#
    );
    let err = failure(engine(), script).await;
    assert!(get_str(&err, "message").contains("size check"), "{err:?}");
    let store = Store::from_uri(&uri).unwrap();
    assert_eq!(store.size("big.json").await.unwrap(), None);
    assert_eq!(store.size("big.json.manifest.json").await.unwrap(), None);
    let leftovers: Vec<_> = walk(&dir.path().join("out"));
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files.extend(walk(&p));
        } else {
            files.push(p);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_fail_with_values_and_unknown_keys_fail_early() {
    let uri = memory_uri();
    let err = failure(
        engine(),
        format!(r#"from_json("<html>").audio_check().write(storage("{uri}"), "a.wav")"#),
    )
    .await;
    assert!(
        get_str(&err, "message").contains("not RIFF/WAVE"),
        "{err:?}"
    );
    let err = failure(
        engine(),
        format!(
            r#"from_json(1).expect_sha256("{}").discard()"#,
            "0".repeat(64)
        ),
    )
    .await;
    assert!(
        get_str(&err, "message").contains(&sha256_hex(b"1")),
        "{err:?}"
    );
    let err = failure(engine(), r#"from_json(1).encrypt("missing")"#.to_string()).await;
    assert!(get_str(&err, "message").contains("missing"), "{err:?}");
    assert!(!err["retryable"].as_bool().unwrap());
    let err = failure(
        engine(),
        r#"fetch("ftp://x/y?sig=1").discard()"#.to_string(),
    )
    .await;
    assert!(
        get_str(&err, "message").contains("absolute http(s) URL"),
        "{err:?}"
    );
    let err = failure(engine(), r#"fetch(|| 42).discard()"#.to_string()).await;
    assert!(
        get_str(&err, "message").contains("expected a URL string"),
        "{err:?}"
    );
    let err = failure(engine(), r#"from_json(1).gzip(12)"#.to_string()).await;
    assert!(get_str(&err, "message").contains("0..=9"), "{err:?}");
    let store = Store::from_uri(&uri).unwrap();
    assert_eq!(store.list("").await.unwrap(), Vec::<String>::new());
    let err = failure(
        engine(),
        r#"storage(#{ uri: "s3://b/p", endpoint: "http://127.0.0.1:9", anonymous: true })"#
            .to_string(),
    )
    .await;
    assert!(
        get_str(&err, "message").contains("anonymous does not apply to s3://"),
        "{err:?}"
    );
    let err = failure(
        engine(),
        r#"storage(#{ uri: "fs:///tmp/x", password: "hunter2" })"#.to_string(),
    )
    .await;
    assert!(
        !format!("{err:?}").contains("hunter2") || get_str(&err, "message").contains("password"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_and_write_json_and_store_maps() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display();
    let script = format!(
        r#"
        let s = storage(#{{ uri: "fs://{root}/m" }});
        s.write_json("report.json", #{{ ok: 3 }});
        s.write_json("report.json", #{{ ok: 4 }});
        let z = from_jsonl([1, 2, 3]).zstd(3).write(s, "n.zst");
        #{{ report: s.read_json("report.json"), z: z, desc: s.describe(), missing: s.read_json("no.json") }}
        "#
    );
    let out = receipt(engine(), script).await;
    assert_eq!(
        out["report"].clone().cast::<Map>()["ok"].as_int().unwrap(),
        4
    );
    assert_eq!(out["desc"].to_string(), format!("fs://{root}/m"));
    assert!(out["missing"].is_unit());
    let z = out["z"].clone().cast::<Map>();
    let stored = std::fs::read(dir.path().join("m/n.zst")).unwrap();
    assert_eq!(zstd::decode_all(&stored[..]).unwrap(), b"1\n2\n3\n");
    assert_eq!(get_int(&z, "bytes_stored"), stored.len() as i64);
}

/// A flow started with no script call around it, from an async task (as a webhook
/// handler would): it writes the run facts it is handed into the manifest and stops at
/// the deadline it is handed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_started_outside_a_script_call_uses_the_scope_it_is_given() {
    let store = Store::from_uri(&memory_uri()).unwrap();
    let scope = cxpipe::item_scope::ItemScope {
        run_id: "run-hook".into(),
        pipeline: "events".into(),
        tenant: "globex".into(),
        item_key: "evt-9".into(),
        script_hash: "cd".repeat(32),
        deadline: Some(Instant::now() + Duration::from_secs(600)),
        max_operations: None,
    };
    let late = cxpipe::item_scope::ItemScope {
        deadline: Some(Instant::now() - Duration::from_millis(1)),
        ..scope.clone()
    };
    let write = |key: &'static str, scope: cxpipe::item_scope::ItemScope| {
        let store = store.clone();
        tokio::spawn(async move {
            let flow = cxpipe::flow::Flow::new(cxpipe::flow::Source::Bytes {
                data: bytes::Bytes::from_static(b"{\"event\":9}"),
                kind: "json",
            });
            tokio::task::spawn_blocking(move || {
                cxpipe::flow::sink::write(&flow, &store, key, &test_keys(), None, &scope)
            })
            .await
            .unwrap()
        })
    };
    let r = write("hook/9.json", scope).await.unwrap().unwrap();
    assert_eq!(r["existed"], serde_json::json!(false));
    let m = cxpipe::flow::manifest::Manifest::load(&store, "hook/9.json")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.run_id.as_deref(), Some("run-hook"));
    assert_eq!(m.pipeline.as_deref(), Some("events"));
    assert_eq!(m.tenant.as_deref(), Some("globex"));
    assert_eq!(m.item_key.as_deref(), Some("evt-9"));
    assert_eq!(m.script_hash, Some("cd".repeat(32)));

    let err = write("hook/10.json", late).await.unwrap().unwrap_err();
    assert!(err.to_string().contains("deadline"), "{err}");
    assert_eq!(store.size("hook/10.json").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_record_the_run_and_script_of_the_item() {
    let uri = memory_uri();
    let engine = engine();
    let script = format!(r#"from_json(#{{ a: 1 }}).write(storage("{uri}"), "m.json")"#);
    tokio::task::spawn_blocking(move || {
        let scope = cxpipe::item_scope::ItemScope {
            run_id: "run-7".into(),
            pipeline: "download".into(),
            tenant: "acme".into(),
            item_key: "rec-1".into(),
            script_hash: "ab".repeat(32),
            deadline: None,
            max_operations: None,
        };
        let r = eval_in_scope(&engine, &script, scope)
            .unwrap()
            .cast::<Map>();
        assert!(!r["existed"].as_bool().unwrap());
    })
    .await
    .unwrap();
    let store = Store::from_uri(&uri).unwrap();
    let m = cxpipe::flow::manifest::Manifest::load(&store, "m.json")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.run_id.as_deref(), Some("run-7"));
    assert_eq!(m.tenant.as_deref(), Some("acme"));
    assert_eq!(m.item_key.as_deref(), Some("rec-1"));
    assert_eq!(m.script_hash, Some("ab".repeat(32)));
    assert_eq!(m.plaintext.sha256, sha256_hex(b"{\"a\":1}"));
    assert_eq!(
        m.stored,
        cxpipe::flow::manifest::Digests {
            md5: None,
            ..m.plaintext.clone()
        }
    );
}
