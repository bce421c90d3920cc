//! Shared helpers for the integration tests: a temporary workspace with scripts, and the
//! real `cxpipe` binary run inside it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Path of the `cxpipe` binary built for these tests.
pub fn cxpipe_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cxpipe"))
}

/// A temporary folder holding scripts and the run state.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
}

/// What a `cxpipe` invocation printed and how it exited.
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

impl From<Output> for Ran {
    fn from(o: Output) -> Ran {
        Ran {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl TestEnv {
    pub fn new() -> TestEnv {
        TestEnv {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `name` (relative) with `text`; returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path().join("state")
    }

    /// A `cxpipe` command running in this folder with quiet logs.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(cxpipe_bin());
        cmd.current_dir(self.path())
            .env("CXPIPE_LOG", "error")
            .env_remove("CXPIPE_STATE");
        cmd
    }

    /// Runs `cxpipe ARGS` to completion.
    pub fn cxpipe(&self, args: &[&str]) -> Ran {
        self.command()
            .args(args)
            .output()
            .expect("run cxpipe")
            .into()
    }

    /// `cxpipe run SCRIPT --state state --json ARGS`.
    pub fn run(&self, script: &Path, extra: &[&str]) -> Ran {
        let state = self.state_dir();
        let mut args = vec![
            "run",
            script.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
            "--json",
        ];
        args.extend_from_slice(extra);
        self.cxpipe(&args)
    }

    /// Item counts by state, read from the ledger.
    pub async fn item_counts(&self) -> std::collections::BTreeMap<String, i64> {
        let ledger = cxpipe::ledger::Ledger::open_dir(&self.state_dir())
            .await
            .unwrap();
        ledger
            .count_items(&Default::default())
            .await
            .unwrap()
            .into_iter()
            .collect()
    }
}

/// Serves `app` on 127.0.0.1 (a free port) from a runtime of its own, so tests can drive
/// the binary with blocking calls while it answers. Returns the runtime (the server stops
/// when it is dropped or shut down) and the base URL.
pub fn serve(app: axum::Router) -> (tokio::runtime::Runtime, String) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let base = serve_on(&rt, app);
    (rt, base)
}

/// Serves `app` on 127.0.0.1 (a free port) from `rt`; returns the base URL.
pub fn serve_on(rt: &tokio::runtime::Runtime, app: axum::Router) -> String {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// A simulator running on its own runtime thread, so tests can drive the binary with
/// blocking calls while it serves. Stops when dropped.
pub struct Sim {
    pub base_url: String,
    pub credentials: cxpipe::sim::SimCredentials,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sim {
    pub fn start(config: cxpipe::sim::SimConfig) -> Sim {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let sim = cxpipe::sim::SimServer::start(config)
                    .await
                    .expect("start simulator");
                ready_tx
                    .send((sim.base_url().to_string(), sim.credentials().clone()))
                    .unwrap();
                let _ = stop_rx.await;
                sim.shutdown().await;
            });
        });
        let (base_url, credentials) = ready_rx.recv().expect("simulator started");
        Sim {
            base_url,
            credentials,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// GET a simulator path as JSON (for `/_sim/*`).
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let url = format!("{}{path}", self.base_url);
        std::thread::scope(|s| {
            s.spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(async {
                        reqwest::get(&url)
                            .await
                            .unwrap()
                            .error_for_status()
                            .unwrap()
                            .json()
                            .await
                            .unwrap()
                    })
            })
            .join()
            .unwrap()
        })
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
