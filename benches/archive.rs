//! Interaction archival (seed 004) end to end: `scripts/archive_interactions.rhai` run by
//! the real `cxpipe` binary against an in-process simulator without faults, for each size
//! in `BENCH_INTERACTIONS` (default `10000,100000`). Reports interactions archived per
//! second and the binary's peak RSS (VmHWM, sampled every 50 ms while it runs, with its RSS
//! at each tenth of the run to show memory stays flat). Then compares with the guide's
//! approach: the time one 480000-round PBKDF2 stretch takes here, which the guide pays for
//! every object.
//! Run: `cargo bench --bench archive` (or `--profile dev`; the binary is built with the
//! same profile).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cxpipe::sim::{SimConfig, SimServer};

/// `VmHWM` and `VmRSS` of process `pid`, in MiB.
fn memory(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

struct Measured {
    archived: u64,
    seconds: f64,
    peak_mib: f64,
    rss_samples: Vec<f64>,
    /// CPU seconds of the `cxpipe` run and of this process (the simulator).
    cpu_cxpipe: f64,
    cpu_sim: f64,
}

/// User + system CPU seconds of this process (`RUSAGE_SELF`) or its waited-for children.
fn cpu_seconds(who: libc::c_int) -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own; no other memory is touched.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn archive(rt: &tokio::runtime::Runtime, interactions: usize, batch: usize) -> Measured {
    let sim = rt
        .block_on(SimServer::start(
            SimConfig {
                seed: 4,
                recordings: interactions / 4,
                interactions,
                ..SimConfig::default()
            }
            .without_faults(),
        ))
        .expect("simulator starts");
    let dir = tempfile::tempdir().unwrap();
    let creds = sim.credentials().clone();
    std::fs::write(dir.path().join("secret"), &creds.client_secret).unwrap();
    std::fs::write(dir.path().join("k.key"), "ab".repeat(32)).unwrap();
    let config = dir.path().join("cxpipe.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[tenants.sim]
base_url = "{}"
auth = {{ kind = "client_credentials", token_url = "/api/v2/oauth/token", client_id = "{}", client_secret = {{ file = "secret" }} }}
[tenants.sim.params]
encrypt_key = "k"
batch_size = {batch}
page_size = 500
[storage.default]
uri = "fs://{}"
[keys.k]
file = "k.key"
"#,
            sim.base_url(),
            creds.client_id,
            dir.path().join("objects").display()
        ),
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/archive_interactions.rhai");
    let (children_before, self_before) = (
        cpu_seconds(libc::RUSAGE_CHILDREN),
        cpu_seconds(libc::RUSAGE_SELF),
    );
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cxpipe"))
        .args(["run", script.to_str().unwrap(), "--json", "--tenant", "sim"])
        .arg("--config")
        .arg(&config)
        .arg("--state")
        .arg(dir.path().join("state"))
        .env("CXPIPE_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cxpipe runs");
    let pid = child.id();
    let mut peak = 0.0f64;
    let mut timeline = Vec::new();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap());
    while child.try_wait().unwrap().is_none() {
        if let Some((hwm, rss)) = memory(pid) {
            peak = peak.max(hwm);
            timeline.push(rss);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_cxpipe = cpu_seconds(libc::RUSAGE_CHILDREN) - children_before;
    let cpu_sim = cpu_seconds(libc::RUSAGE_SELF) - self_before;
    let out: serde_json::Value = serde_json::from_str(&reader.join().unwrap()).expect("JSON");
    let report = &out["report"];
    assert_eq!(report["failed"], 0, "{report}");
    let archived = report["archived"].as_u64().unwrap();
    rt.block_on(sim.shutdown());
    let tenth = (timeline.len() / 10).max(1);
    Measured {
        archived,
        seconds,
        peak_mib: peak,
        rss_samples: timeline.iter().step_by(tenth).copied().collect(),
        cpu_cxpipe,
        cpu_sim,
    }
}

fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_INTERACTIONS")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("BENCH_INTERACTIONS: comma-separated counts")
        })
        .collect();
    let batch = 100;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "profile: {}, cores: {}, batch: {batch} interactions per object",
        if cfg!(debug_assertions) {
            "dev"
        } else {
            "release"
        },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for n in sizes {
        let m = archive(&rt, n, batch);
        let rss: Vec<String> = m.rss_samples.iter().map(|r| format!("{r:.0}")).collect();
        println!(
            "{n:>7} interactions: {} closed archived in {:.1} s = {:.0} interactions/s; peak RSS {:.1} MiB; RSS by tenths [{}] MiB; CPU: cxpipe {:.1} s, simulator {:.1} s",
            m.archived,
            m.seconds,
            m.archived as f64 / m.seconds,
            m.peak_mib,
            rss.join(", "),
            m.cpu_cxpipe,
            m.cpu_sim,
        );
    }
    // The guide stretches the passphrase (480000 PBKDF2 rounds) for every object it writes.
    let started = Instant::now();
    let mut key = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(b"passphrase", b"0123456789abcdef", 480_000, &mut key);
    let stretch = started.elapsed().as_secs_f64();
    println!(
        "one 480000-round PBKDF2 stretch: {stretch:.2} s here; stretching per object caps a run at {:.0} interactions/s with {batch}-interaction objects, {:.1}/s with one per object (the guide)",
        batch as f64 / stretch,
        1.0 / stretch
    );
}
