//! Flow throughput: fetch from a loopback server → SHA-256 + MD5 → AES-256-GCM → fs (and
//! the same with gzip level 1), each compared in the same run with its compute bound: the
//! same stages chained over an in-memory buffer on one thread, no I/O. Also reports peak
//! RSS. `BENCH_BYTES` sets the object size (default 1 GiB); `BENCH_DIR` the folder the fs
//! store lives in (default: the temp dir; fs writes end with `fsync`).
//!
//! Run: `cargo bench --bench flow`

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::header;
use axum::response::Response;
use bytes::Bytes;
use cxpipe::flow::chain::Chain;
use cxpipe::flow::codec::Codec;
use cxpipe::flow::run::{self, Sink};
use cxpipe::flow::{Flow, Source, Stage, UrlSource};
use cxpipe::keys::KeyRing;
use cxpipe::storage::Store;

const BLOCK: usize = 1024 * 1024;

fn block() -> Bytes {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut v = Vec::with_capacity(BLOCK);
    while v.len() < BLOCK {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.into()
}

async fn serve(total: u64) -> String {
    let blk = block();
    let app = Router::new().route(
        "/blob",
        axum::routing::get(move || {
            let blk = blk.clone();
            async move {
                let stream = futures::stream::unfold(0u64, move |sent| {
                    let blk = blk.clone();
                    async move {
                        if sent >= total {
                            return None;
                        }
                        let n = (total - sent).min(BLOCK as u64) as usize;
                        Some((Ok::<_, std::io::Error>(blk.slice(..n)), sent + n as u64))
                    }
                });
                Response::builder()
                    .header(header::CONTENT_LENGTH, total)
                    .body(Body::from_stream(stream))
                    .unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/blob")
}

fn compute_bound(stages: &[Stage], keys: &KeyRing, total: u64) -> Duration {
    let blk = block();
    let (mut chain, _) = Chain::build(stages, keys).unwrap();
    let mut out = Vec::with_capacity(2 * BLOCK);
    let started = Instant::now();
    let mut done = 0u64;
    while done < total {
        let n = (total - done).min(BLOCK as u64) as usize;
        chain.push(&blk[..n], &mut out).unwrap();
        out.clear();
        done += n as u64;
    }
    chain.finish(&mut out).unwrap();
    started.elapsed()
}

fn end_to_end(url: &str, stages: &[Stage], keys: &KeyRing, store: &Store, key: &str) -> Duration {
    let flow = Flow {
        stages: stages.to_vec(),
        ..Flow::new(Source::Fetch(UrlSource::Fixed(url.to_string())))
    };
    let sink = Sink::Store {
        store: store.clone(),
        key: key.to_string(),
    };
    let started = Instant::now();
    run::run(&flow, sink, keys, None, Default::default()).unwrap();
    started.elapsed()
}

fn rss_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() {
    let total: u64 = std::env::var("BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut keys = KeyRing::empty();
    keys.insert_raw("bench", [7; 32]);
    let dir = match std::env::var("BENCH_DIR") {
        Ok(d) => tempfile::tempdir_in(d).unwrap(),
        Err(_) => tempfile::tempdir().unwrap(),
    };
    let store = Store::from_uri(&format!("fs://{}", dir.path().display())).unwrap();
    let url = rt.block_on(serve(total));
    println!("RSS before the flows: {:.1} MiB", rss_mib("VmRSS:"));
    let mib = total as f64 / (1024.0 * 1024.0);
    println!(
        "object: {mib:.0} MiB, cores: {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let cases: [(&str, Vec<Stage>); 2] = [
        (
            "sha256+md5+aes-gcm",
            vec![Stage::Sha256, Stage::Md5, Stage::Encrypt("bench".into())],
        ),
        (
            "sha256+md5+gzip(1)+aes-gcm",
            vec![
                Stage::Sha256,
                Stage::Md5,
                Stage::Compress(Codec::Gzip, 1),
                Stage::Encrypt("bench".into()),
            ],
        ),
    ];
    for (i, (name, stages)) in cases.iter().enumerate() {
        let key = format!("bench-{i}.enc");
        let (u, s, k, st) = (url.clone(), stages.clone(), keys.clone(), store.clone());
        let e2e = rt
            .block_on(rt.spawn_blocking(move || end_to_end(&u, &s, &k, &st, &key)))
            .unwrap();
        let bound = compute_bound(stages, &keys, total);
        let rate = |d: Duration| mib / d.as_secs_f64();
        println!(
            "{name:28} end-to-end {:7.1} MiB/s   compute bound {:7.1} MiB/s   ratio {:5.1}%",
            rate(e2e),
            rate(bound),
            100.0 * bound.as_secs_f64() / e2e.as_secs_f64()
        );
        let _ = std::fs::remove_file(dir.path().join(format!("bench-{i}.enc")));
    }
    println!("peak RSS: {:.1} MiB", rss_mib("VmHWM:"));
}
