//! Async producers for each [`Source`]: they push [`Chunk`]s into a bounded channel and,
//! for `fetch(fn)`, ask the flow's thread for fresh URLs ([`SourceMsg::NeedUrl`]).

use std::path::PathBuf;

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::error::FlowError;
use super::fetch::{self, Chunk, FetchOutcome, FetchPolicy, FetchState};
use crate::storage::Store;

/// Bytes per chunk for in-memory, file and store sources.
pub const CHUNK: usize = 1024 * 1024;

/// What a source task reports to the flow's thread.
#[derive(Debug)]
pub enum SourceMsg {
    Chunk(Chunk),
    /// Call the URL function and answer on the URL channel.
    NeedUrl {
        status: Option<u16>,
    },
    Done(Box<FetchState>),
    Failed(FlowError),
}

/// How a source gets bytes; a plain-data copy of [`Source`](super::Source) without Rhai.
pub enum Producer {
    Fetch {
        fixed: Option<String>,
        /// An API endpoint fetched with the tenant's token (`ctx.api.fetch(path)`).
        api: Option<(crate::api::Api, crate::api::ApiPath)>,
        urls: mpsc::Receiver<String>,
        policy: FetchPolicy,
    },
    Bytes(Bytes),
    Read(Store, String),
    File(PathBuf),
}

/// Runs the producer to completion, reporting through `out`.
pub async fn produce(producer: Producer, out: mpsc::Sender<SourceMsg>) {
    let result = run_producer(producer, &out).await;
    let _ = match result {
        Ok(state) => out.send(SourceMsg::Done(Box::new(state))).await,
        Err(e) => out.send(SourceMsg::Failed(e)).await,
    };
}

async fn run_producer(
    producer: Producer,
    tx: &mpsc::Sender<SourceMsg>,
) -> Result<FetchState, FlowError> {
    match producer {
        Producer::Fetch {
            api: Some((api, path)),
            policy,
            ..
        } => super::api_fetch::fetch_loop(&api, &path, &policy, tx).await,
        Producer::Fetch {
            fixed,
            api: None,
            urls,
            policy,
        } => fetch_loop(fixed, urls, policy, tx).await,
        Producer::Bytes(b) => {
            let mut at = 0;
            while at < b.len() {
                let end = (at + CHUNK).min(b.len());
                send(tx, b.slice(at..end)).await?;
                at = end;
            }
            Ok(FetchState::default())
        }
        Producer::Read(store, key) => {
            let mut stream = Box::pin(store.read_stream(&key).await?);
            while let Some(b) = stream.next().await {
                send(tx, b?).await?;
            }
            Ok(FetchState::default())
        }
        Producer::File(path) => {
            let io =
                |e: std::io::Error| FlowError::Internal(format!("reading {}: {e}", path.display()));
            let mut f = tokio::fs::File::open(&path).await.map_err(io)?;
            loop {
                let mut buf = vec![0u8; CHUNK];
                let n = f.read(&mut buf).await.map_err(io)?;
                if n == 0 {
                    break;
                }
                buf.truncate(n);
                send(tx, Bytes::from(buf)).await?;
            }
            Ok(FetchState::default())
        }
    }
}

async fn send(tx: &mpsc::Sender<SourceMsg>, b: Bytes) -> Result<(), FlowError> {
    tx.send(SourceMsg::Chunk(Chunk::Data(b)))
        .await
        .map_err(|_| FlowError::Internal("the flow stopped reading its source".into()))
}

async fn fetch_loop(
    fixed: Option<String>,
    mut urls: mpsc::Receiver<String>,
    policy: FetchPolicy,
    tx: &mpsc::Sender<SourceMsg>,
) -> Result<FetchState, FlowError> {
    let mut state = FetchState::default();
    let mut url = match &fixed {
        Some(u) => u.clone(),
        None => next_url(&mut urls, tx, None).await?,
    };
    loop {
        let offset_at_start = state.offset;
        match fetch::transfer(&url, None, &mut state, &policy, tx).await? {
            FetchOutcome::Done => return Ok(state),
            FetchOutcome::Refresh { status } => {
                let reason = format!("URL refused with {status} (expired or forbidden)");
                if fixed.is_some() {
                    return Err(fetch::give_up(
                        &url,
                        &state,
                        format!(
                            "{reason}; fetch(url) cannot refresh it, pass a function: fetch(|| ...)"
                        ),
                        Some(status),
                        false,
                    ));
                }
                let stuck = state.offset == offset_at_start;
                if stuck {
                    state.failures += 1;
                }
                if state.failures >= policy.tries {
                    return Err(fetch::give_up(&url, &state, reason, Some(status), true));
                }
                if stuck {
                    // A fresh URL refused at once: do not ask the API again straight away.
                    tokio::time::sleep(policy.wait_limit(fetch::backoff(&policy, state.failures)))
                        .await;
                }
                tracing::info!(
                    offset = state.offset,
                    status,
                    "download URL refused; asking for a fresh one"
                );
                url = next_url(&mut urls, tx, Some(status)).await?;
                state.refreshes += 1;
            }
        }
    }
}

async fn next_url(
    urls: &mut mpsc::Receiver<String>,
    out: &mpsc::Sender<SourceMsg>,
    status: Option<u16>,
) -> Result<String, FlowError> {
    out.send(SourceMsg::NeedUrl { status })
        .await
        .map_err(|_| FlowError::Internal("the flow stopped".into()))?;
    urls.recv()
        .await
        .ok_or_else(|| FlowError::Internal("no fresh URL was given".into()))
}
