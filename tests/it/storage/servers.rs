//! The S3 (s3s-fs) and Azure (Azurite) test servers started by `.ci/servers.sh`: fixed
//! loopback endpoints, test credentials written to files and referenced as secrets.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use cxpipe::secret::SecretRef;
use cxpipe::storage::{StorageConfig, Store};
use hmac::{KeyInit, Mac};

const S3_DEFAULT: &str = "http://127.0.0.1:9010";
const AZURE_DEFAULT: &str = "http://127.0.0.1:10000/devstoreaccount1";
const AZURE_ACCOUNT: &str = "devstoreaccount1";
const AZURE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Whether the server behind `endpoint` answers; under CI=true a missing server panics.
fn reachable(what: &str, endpoint: &str) -> bool {
    let url = reqwest::Url::parse(endpoint).unwrap();
    let addr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let ok =
        std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_millis(300))
            .is_ok();
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "{what} test server is not running at {endpoint} (CI=true requires it; run .ci/servers.sh)"
            );
        }
        announce_skip(what, endpoint);
    }
    ok
}

/// Backends whose skip was announced in this test process.
static ANNOUNCED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Says once per backend, on the real stderr, that its tests ran without it. `eprintln!`
/// would be captured by the test harness and never shown for a passing test, so the line
/// is written to the stderr handle directly, which the harness does not capture.
fn announce_skip(what: &str, endpoint: &str) {
    let mut announced = ANNOUNCED.lock().unwrap_or_else(|e| e.into_inner());
    if announced.iter().any(|w| w == what) {
        return;
    }
    announced.push(what.to_string());
    let line = format!(
        "\nSKIPPED: the {what} backend (no server at {endpoint}); the storage tests ran without \
         it. Start the servers with `bash .ci/servers.sh` (CI=true makes this a failure).\n"
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
}

fn secret_file(dir: &tempfile::TempDir, name: &str, value: &str) -> Option<SecretRef> {
    let p = dir.path().join(name);
    std::fs::write(&p, value).unwrap();
    Some(SecretRef::File(p))
}

/// A fresh prefix of the S3 test bucket.
pub async fn s3() -> Option<(Store, tempfile::TempDir)> {
    let endpoint = std::env::var("CXPIPE_TEST_S3_ENDPOINT").unwrap_or_else(|_| S3_DEFAULT.into());
    if !reachable("S3", &endpoint) {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = StorageConfig {
        uri: format!("s3://cxpipe-test/run-{}", uuid::Uuid::new_v4()),
        endpoint: Some(endpoint),
        region: Some("us-east-1".into()),
        access_key_id: secret_file(&dir, "ak", "cxpipe-test"),
        secret_access_key: secret_file(&dir, "sk", "cxpipe-test-secret"),
        ..StorageConfig::default()
    };
    Some((Store::from_config(&cfg, dir.path()).unwrap(), dir))
}

/// A fresh prefix of the Azurite test container (created when missing).
pub async fn azure() -> Option<(Store, tempfile::TempDir)> {
    let endpoint =
        std::env::var("CXPIPE_TEST_AZURE_ENDPOINT").unwrap_or_else(|_| AZURE_DEFAULT.into());
    if !reachable("Azure", &endpoint) {
        return None;
    }
    create_container(&endpoint, "cxpipe-test").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = StorageConfig {
        uri: format!("azblob://cxpipe-test/run-{}", uuid::Uuid::new_v4()),
        endpoint: Some(endpoint),
        account_name: Some(AZURE_ACCOUNT.into()),
        account_key: secret_file(&dir, "key", AZURE_KEY),
        ..StorageConfig::default()
    };
    Some((Store::from_config(&cfg, dir.path()).unwrap(), dir))
}

/// `PUT ?restype=container` signed with SharedKey; 201 or 409 (exists) are both fine.
async fn create_container(endpoint: &str, container: &str) {
    let date = httpdate::fmt_http_date(SystemTime::now());
    let version = "2021-08-06";
    let path = reqwest::Url::parse(endpoint)
        .unwrap()
        .path()
        .trim_end_matches('/')
        .to_string();
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURE_ACCOUNT}{path}/{container}\nrestype:container"
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(AZURE_KEY)
        .unwrap();
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key).unwrap();
    mac.update(to_sign.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let resp = reqwest::Client::new()
        .put(format!("{endpoint}/{container}?restype=container"))
        .header("x-ms-date", date)
        .header("x-ms-version", version)
        .header("Content-Length", "0")
        .header("Authorization", format!("SharedKey {AZURE_ACCOUNT}:{sig}"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert!(
        status == 201 || status == 409,
        "creating container: {status} {}",
        resp.text().await.unwrap_or_default()
    );
}
