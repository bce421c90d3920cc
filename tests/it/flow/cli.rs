//! `cxpipe decrypt` and `cxpipe verify` on objects written by flows: round trips, and
//! tampering (flipped byte, truncation, swapped segments, edited header) detected by both.

use std::path::Path;
use std::process::Command;

use cxpipe::flow::{Flow, Source, Stage};
use cxpipe::storage::Store;

use super::*;
use crate::harness::cxpipe_bin;

const SEG: usize = 64 * 1024 + 16;
const HEADER: usize = 64;

/// Writes `data` encrypted with key `k` (and plain) into an fs store at `root`.
async fn write_objects(root: &Path, data: Bytes) -> Store {
    let store = Store::from_uri(&format!("fs://{}", root.display())).unwrap();
    let s = store.clone();
    tokio::task::spawn_blocking(move || {
        let keys = test_keys();
        let src = Source::Bytes { data, kind: "test" };
        let enc = Flow {
            stages: vec![Stage::Md5, Stage::Encrypt("k".into())],
            ..Flow::new(src.clone())
        };
        cxpipe::flow::sink::write(&enc, &s, "rec/a.enc", &keys, None, &Default::default()).unwrap();
        let plain = Flow {
            stages: vec![Stage::Md5],
            ..Flow::new(src)
        };
        cxpipe::flow::sink::write(&plain, &s, "rec/b.wav", &keys, None, &Default::default())
            .unwrap();
    })
    .await
    .unwrap();
    store
}

fn key_file(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("k.hex");
    std::fs::write(&p, hex::encode([0x42u8; 32])).unwrap();
    p
}

fn cxpipe(args: &[&str]) -> std::process::Output {
    Command::new(cxpipe_bin()).args(args).output().unwrap()
}

fn config(dir: &Path) -> String {
    let p = dir.join("cxpipe.toml");
    std::fs::write(&p, "[keys.k]\nfile = \"k.hex\"\n").unwrap();
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decrypt_restores_byte_for_byte_and_verify_passes() {
    let dir = tempfile::tempdir().unwrap();
    let kf = key_file(dir.path());
    let root = dir.path().join("store");
    let data = noise(3 * 64 * 1024 + 999, 11);
    write_objects(&root, data.clone()).await;
    let uri = format!("fs://{}", root.display());
    let out = dir.path().join("a.wav");
    let o = cxpipe(&[
        "decrypt",
        "--key-file",
        &kf.display().to_string(),
        "--store",
        &uri,
        "rec/a.enc",
        "-o",
        &out.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&out).unwrap(), data);
    // A local file with the key found by id through the config.
    let o = cxpipe(&[
        "decrypt",
        "--config",
        &config(dir.path()),
        &root.join("rec/a.enc").display().to_string(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.stdout, data);
    let o = cxpipe(&["verify", &uri, "--config", &config(dir.path())]);
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("2 ok, 0 problems"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_detected_by_verify_and_decrypt() {
    type Edit = fn(&mut Vec<u8>);
    let edits: [(&str, Edit); 4] = [
        ("flipped byte", |b| b[HEADER + 5000] ^= 0x01),
        ("truncated", |b| b.truncate(b.len() - 100)),
        ("swapped segments", |b| {
            let first = b[HEADER..HEADER + SEG].to_vec();
            b.copy_within(HEADER + SEG..HEADER + 2 * SEG, HEADER);
            b[HEADER + SEG..HEADER + 2 * SEG].copy_from_slice(&first);
        }),
        ("edited header", |b| b[30] ^= 0x10),
    ];
    let data = noise(3 * 64 * 1024 + 999, 12);
    for (what, edit) in edits {
        let dir = tempfile::tempdir().unwrap();
        let kf = key_file(dir.path());
        let root = dir.path().join("store");
        write_objects(&root, data.clone()).await;
        let obj = root.join("rec/a.enc");
        let mut bytes = std::fs::read(&obj).unwrap();
        edit(&mut bytes);
        std::fs::write(&obj, bytes).unwrap();
        let uri = format!("fs://{}", root.display());

        let o = cxpipe(&["verify", &uri]);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(1), "{what}: {stdout}");
        assert!(stdout.contains("MISMATCH rec/a.enc"), "{what}: {stdout}");
        assert!(!stdout.contains("rec/b.wav"), "{what}: {stdout}");

        let o = cxpipe(&["verify", &uri, "--config", &config(dir.path())]);
        assert_eq!(o.status.code(), Some(1), "{what} with keys");

        let out = dir.path().join("out.wav");
        let o = cxpipe(&[
            "decrypt",
            "--key-file",
            &kf.display().to_string(),
            &obj.display().to_string(),
            "-o",
            &out.display().to_string(),
        ]);
        assert!(
            !o.status.success(),
            "{what}: decrypt accepted a tampered object"
        );
        assert!(!out.exists(), "{what}: output left behind");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
            .collect();
        assert!(leftovers.is_empty(), "{what}: partial output left behind");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_plain_object_edits_and_missing_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    write_objects(&root, noise(1000, 13)).await;
    std::fs::write(root.join("rec/b.wav"), b"changed").unwrap();
    std::fs::write(root.join("rec/c.wav"), b"no manifest").unwrap();
    std::fs::remove_file(root.join("rec/a.enc")).unwrap();
    let o = cxpipe(&["verify", &format!("fs://{}", root.display()), "rec/"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout.contains("MISMATCH rec/b.wav: stored size 7 != manifest 1000"),
        "{stdout}"
    );
    assert!(
        stdout.contains("MISMATCH rec/c.wav: no manifest"),
        "{stdout}"
    );
    assert!(
        stdout.contains("MISMATCH rec/a.enc: manifest without object"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decrypt_reads_seed_004_envelopes() {
    let dir = tempfile::tempdir().unwrap();
    let pass = cxpipe::secret::Secret::new("s3cret-pass");
    let env_file = dir.path().join("archive.enc.gz");
    std::fs::write(
        &env_file,
        cxpipe::flow::envelope::seal(b"{\"id\":1}\n", &pass),
    )
    .unwrap();
    let o = Command::new(cxpipe_bin())
        .args([
            "decrypt",
            "--passphrase-env",
            "CXPIPE_TEST_ENVELOPE_PASS",
            &env_file.display().to_string(),
        ])
        .env("CXPIPE_TEST_ENVELOPE_PASS", "s3cret-pass")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.stdout, b"{\"id\":1}\n");
    let o = Command::new(cxpipe_bin())
        .args([
            "decrypt",
            "--passphrase-env",
            "CXPIPE_TEST_ENVELOPE_PASS",
            &env_file.display().to_string(),
        ])
        .env("CXPIPE_TEST_ENVELOPE_PASS", "wrong")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("authentication failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decrypt_decompresses_on_request_and_verify_speaks_json() {
    let dir = tempfile::tempdir().unwrap();
    key_file(dir.path());
    let root = dir.path().join("store");
    let store = Store::from_uri(&format!("fs://{}", root.display())).unwrap();
    let text = Bytes::from("{\"id\":1}\n".repeat(5000));
    let (s, t) = (store.clone(), text.clone());
    tokio::task::spawn_blocking(move || {
        let flow = Flow {
            stages: vec![
                Stage::Compress(cxpipe::flow::codec::Codec::Zstd, 3),
                Stage::Encrypt("k".into()),
            ],
            ..Flow::new(Source::Bytes {
                data: t,
                kind: "jsonl",
            })
        };
        cxpipe::flow::sink::write(
            &flow,
            &s,
            "rows.jsonl.zst.enc",
            &test_keys(),
            None,
            &Default::default(),
        )
        .unwrap();
    })
    .await
    .unwrap();
    let cfg = config(dir.path());
    let uri = format!("fs://{}", root.display());
    let o = cxpipe(&[
        "decrypt",
        "--config",
        &cfg,
        "--key",
        "k",
        "--store",
        &uri,
        "rows.jsonl.zst.enc",
        "--decompress",
        "zstd",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.stdout, text);
    let o = cxpipe(&["verify", &uri, "--config", &cfg, "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], serde_json::json!(["rows.jsonl.zst.enc"]));
    assert_eq!(v["problems"], serde_json::json!([]));
    let o = cxpipe(&["decrypt", "--store", &uri, "rows.jsonl.zst.enc"]);
    assert!(!o.status.success(), "no key given");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no configured key has id"));
}
