//! Running a flow: the source produces on the async runtime, the calling (blocking) thread
//! runs the CPU stages, and a writer task uploads; bounded channels between them give
//! backpressure. On any error the upload is aborted, so nothing partial is visible.
//! Must be called from a thread that may block on the tokio runtime (`spawn_blocking`).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::chain::{Chain, ChainPlan, ChainResult};
use super::error::FlowError;
use super::fetch::{Chunk, FetchPolicy, FetchState};
use super::source::{Producer, SourceMsg, produce};
use super::spec::{Flow, Source, UrlSource};
use crate::keys::KeyRing;
use crate::storage::{ObjectWriter, StorageError, Store};

/// Stored bytes are handed to the writer in pieces of about this size.
const OUT_BATCH: usize = 1024 * 1024;
/// Room past a batch for the output of one more input chunk.
const OUT_SLACK: usize = 256 * 1024;

/// Where a flow's output goes.
pub enum Sink {
    /// A new object (never overwrites).
    Store { store: Store, key: String },
    /// Nowhere: check and hash only.
    Discard,
    /// A local writer (CLI); cannot restart.
    Local(Box<dyn Write + Send>),
}

/// What a finished flow did.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// The key existed when the write was to start, or was created by another writer
    /// while this one wrote (`existed_before` tells which); nothing was overwritten.
    pub existed: bool,
    /// The key existed before the write started: nothing was read.
    pub existed_before: bool,
    pub bytes_read: u64,
    pub chain: ChainResult,
    pub plan: ChainPlan,
    pub duration: Duration,
    pub fetch: FetchState,
}

enum WriterMsg {
    Data(Bytes),
    Restart,
}

/// Runs `flow` into `sink`. `url_fn` gives fresh URLs for `fetch(fn)` flows. The flow
/// stops at `policy.deadline` (the item's), as do its store calls.
pub fn run(
    flow: &Flow,
    sink: Sink,
    keys: &KeyRing,
    url_fn: Option<&mut dyn FnMut() -> Result<String, FlowError>>,
    policy: FetchPolicy,
) -> Result<Outcome, FlowError> {
    let started = Instant::now();
    let deadline = policy.deadline;
    let handle = Handle::current();
    // In-memory sources are small: not worth an MD5 thread.
    let parallel = !matches!(flow.source, Source::Bytes { .. });
    let (chain, plan) = Chain::build_with(&flow.stages, keys, parallel)?;

    let mut local = None;
    let mut target = None;
    match sink {
        Sink::Store { store, key } => {
            let created = crate::storage::block_within(
                &handle,
                deadline,
                &store,
                "creating",
                &key,
                |s, k| async move { s.create(&k).await },
            );
            let writer = match created? {
                Some(w) => w,
                None => {
                    return Ok(Outcome {
                        existed: true,
                        existed_before: true,
                        plan,
                        duration: started.elapsed(),
                        ..Outcome::default()
                    });
                }
            };
            target = Some((store, key, writer));
        }
        Sink::Discard => {}
        Sink::Local(w) => local = Some(w),
    }

    let (url_tx, url_rx) = mpsc::channel::<String>(1);
    let producer = match &flow.source {
        Source::Fetch(u) => Producer::Fetch {
            fixed: match u {
                UrlSource::Fixed(s) => Some(s.clone()),
                UrlSource::Function(_) | UrlSource::Api { .. } => None,
            },
            api: match u {
                UrlSource::Api { api, path } => Some((api.within(deadline), path.clone())),
                _ => None,
            },
            urls: url_rx,
            policy: FetchPolicy {
                tries: flow.tries,
                min_progress_bytes: flow
                    .min_progress
                    .map_or(policy.min_progress_bytes, |(bytes, _)| bytes),
                min_progress_window: flow
                    .min_progress
                    .map_or(policy.min_progress_window, |(_, window)| window),
                expected_total: expected_size(&flow.stages),
                hash_checked: flow
                    .stages
                    .iter()
                    .take_while(|s| !s.is_transform())
                    .any(|s| matches!(s, super::spec::Stage::ExpectSha256(_))),
                ..policy
            },
        },
        Source::Bytes { data, .. } => Producer::Bytes(data.clone()),
        Source::Read { store, key } => Producer::Read(store.clone(), key.clone()),
        Source::File(p) => Producer::File(p.clone()),
    };
    let (src_tx, mut src_rx) = mpsc::channel::<SourceMsg>(8);
    let source_task = handle.spawn(produce(producer, src_tx));

    let (wr_tx, writer_task) = match target {
        Some((store, key, writer)) => {
            let (tx, rx) = mpsc::channel::<WriterMsg>(2);
            let task = handle.spawn(write_task(store.clone(), key.clone(), writer, rx));
            (Some(tx), Some((task, store, key)))
        }
        None => (None, None),
    };

    let mut state = Running {
        chain: Some(chain),
        stages: &flow.stages,
        keys,
        parallel,
        out: Vec::with_capacity(OUT_BATCH + OUT_SLACK),
        bytes_read: 0,
        wr_tx,
        local,
    };
    let mut url_fn = url_fn;
    let result = (|| -> Result<FetchState, FlowError> {
        loop {
            let Some(msg) = src_rx.blocking_recv() else {
                return Err(FlowError::Internal(
                    "the source stopped without a result".into(),
                ));
            };
            match msg {
                SourceMsg::Chunk(Chunk::Data(b)) => state.push(b)?,
                SourceMsg::Chunk(Chunk::Restart) => state.restart()?,
                SourceMsg::NeedUrl { .. } => {
                    let f = url_fn.as_mut().ok_or_else(|| {
                        FlowError::Internal("a fresh URL is needed but there is no function".into())
                    })?;
                    let url = f()?;
                    url_tx
                        .blocking_send(url)
                        .map_err(|_| FlowError::Internal("the download stopped".into()))?;
                }
                SourceMsg::Done(fs) => return Ok(*fs),
                SourceMsg::Failed(e) => return Err(e),
            }
            if let Some(d) = deadline
                && Instant::now() >= d
            {
                return Err(FlowError::Deadline {
                    received: state.bytes_read,
                });
            }
        }
    })();

    let finished = result.and_then(|fetch| {
        let chain = state.chain.take().expect("chain present until finish");
        let res = chain.finish(&mut state.out)?;
        state.flush(true)?;
        if let Some(w) = &mut state.local {
            // A buffered writer's last bytes: its error must fail the flow, not be dropped.
            w.flush()
                .map_err(|e| FlowError::Internal(format!("writing output: {e}")))?;
        }
        Ok((fetch, res))
    });
    drop(src_rx);
    source_task.abort();
    let wr_tx = state.wr_tx.take();
    let bytes_read = state.bytes_read;

    match finished {
        Ok((fetch, chain)) => {
            let mut existed = false;
            if let Some((task, store, key)) = writer_task {
                drop(wr_tx);
                let writer = join_writer(&handle, task)?;
                // Not cut at the deadline: every byte is sent, and an object cut between
                // its commit and its manifest would stay without one.
                match handle.block_on(writer.close()) {
                    Ok(crate::storage::Closed::Stored(_)) => {}
                    Ok(crate::storage::Closed::Existed) => existed = true,
                    Err(e) => {
                        if !committed_anyway(&store, &key, &chain.stored) {
                            return Err(e.into());
                        }
                        tracing::warn!(
                            store = %store.describe(), %key, error = %e,
                            "the commit's reply was lost, but the object holds exactly these bytes"
                        );
                    }
                }
            }
            Ok(Outcome {
                existed,
                existed_before: false,
                bytes_read,
                chain,
                plan,
                duration: started.elapsed(),
                fetch,
            })
        }
        Err(e) => {
            if let Some((task, store, key)) = writer_task {
                drop(wr_tx);
                match handle.block_on(task) {
                    Ok(Ok(mut w)) => handle.block_on(w.abort()),
                    Ok(Err(we)) => {
                        tracing::warn!(store = %store.describe(), %key, error = %we, "writer failed");
                        // The writer's error explains a failed send better than the send.
                        if matches!(e, FlowError::Internal(_)) {
                            return Err(we.into());
                        }
                    }
                    Err(_) => {}
                }
            }
            Err(e)
        }
    }
}

/// Whether a commit that reported an error went through anyway (the server committed and
/// the reply was lost): `key` now holds exactly the bytes this flow produced. Read back
/// with a flow of its own, which hashes the source bytes.
fn committed_anyway(store: &Store, key: &str, stored: &super::tap::TapResult) -> bool {
    let Some(want) = stored.sha256.as_deref() else {
        return false;
    };
    let back = Flow::new(Source::Read {
        store: store.clone(),
        key: key.to_string(),
    });
    match run(
        &back,
        Sink::Discard,
        &KeyRing::empty(),
        None,
        FetchPolicy::default(),
    ) {
        Ok(o) => {
            o.chain.plaintext.size == stored.size
                && o.chain.plaintext.sha256.as_deref() == Some(want)
        }
        Err(_) => false,
    }
}

/// The first `.expect_size(n)` before any transform: the size of the source bytes.
fn expected_size(stages: &[super::spec::Stage]) -> Option<u64> {
    stages
        .iter()
        .take_while(|s| !s.is_transform())
        .find_map(|s| match s {
            super::spec::Stage::ExpectSize(n) => Some(*n),
            _ => None,
        })
}

struct Running<'a> {
    chain: Option<Chain>,
    stages: &'a [super::spec::Stage],
    keys: &'a KeyRing,
    parallel: bool,
    out: Vec<u8>,
    bytes_read: u64,
    wr_tx: Option<mpsc::Sender<WriterMsg>>,
    local: Option<Box<dyn Write + Send>>,
}

impl Running<'_> {
    fn push(&mut self, b: Bytes) -> Result<(), FlowError> {
        self.bytes_read += b.len() as u64;
        self.chain
            .as_mut()
            .expect("chain present")
            .push_shared(&b, &mut self.out)?;
        self.flush(false)
    }

    fn flush(&mut self, all: bool) -> Result<(), FlowError> {
        if self.out.is_empty() || (!all && self.out.len() < OUT_BATCH) {
            return Ok(());
        }
        if let Some(tx) = &self.wr_tx {
            let data = Bytes::from(std::mem::replace(
                &mut self.out,
                Vec::with_capacity(OUT_BATCH + OUT_SLACK),
            ));
            tx.blocking_send(WriterMsg::Data(data))
                .map_err(|_| FlowError::Internal("the writer stopped".into()))?;
        } else if let Some(w) = &mut self.local {
            w.write_all(&self.out)
                .map_err(|e| FlowError::Internal(format!("writing output: {e}")))?;
            self.out.clear();
        } else {
            self.out.clear();
        }
        Ok(())
    }

    fn restart(&mut self) -> Result<(), FlowError> {
        if self.local.is_some() {
            return Err(FlowError::Internal(
                "the source restarted and local output cannot".into(),
            ));
        }
        let (chain, _) = Chain::build_with(self.stages, self.keys, self.parallel)?;
        self.chain = Some(chain);
        self.out.clear();
        self.bytes_read = 0;
        if let Some(tx) = &self.wr_tx {
            tx.blocking_send(WriterMsg::Restart)
                .map_err(|_| FlowError::Internal("the writer stopped".into()))?;
        }
        Ok(())
    }
}

async fn write_task(
    store: Store,
    key: String,
    mut writer: ObjectWriter,
    mut rx: mpsc::Receiver<WriterMsg>,
) -> Result<ObjectWriter, StorageError> {
    while let Some(msg) = rx.recv().await {
        match msg {
            WriterMsg::Data(b) => writer.write(b).await?,
            WriterMsg::Restart => {
                writer.abort().await;
                writer = store
                    .create(&key)
                    .await?
                    .ok_or_else(|| StorageError::Exists {
                        key: key.clone(),
                        store: store.describe(),
                    })?;
            }
        }
    }
    Ok(writer)
}

fn join_writer(
    handle: &Handle,
    task: tokio::task::JoinHandle<Result<ObjectWriter, StorageError>>,
) -> Result<ObjectWriter, FlowError> {
    match handle.block_on(task) {
        Ok(r) => Ok(r?),
        Err(e) => Err(FlowError::Internal(format!("writer task: {e}"))),
    }
}

/// Shared, immutable keys for flows started from scripts.
pub type SharedKeys = Arc<KeyRing>;
