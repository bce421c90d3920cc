//! Job polling: done after a few polls with growing intervals, failed states raise the
//! job's reason, a deadline stops it (all on a skipping clock).

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use cxpipe::api::ApiError;
use cxpipe::api::poll::{PollSpec, poll};
use serde_json::json;

use super::server::Behaviour;
use super::{records, run_script, setup};

fn job(polls_before_done: u64, final_state: &str) -> Behaviour {
    Behaviour {
        job_polls_before_done: polls_before_done,
        job_final_state: final_state.to_string(),
        ..records(0)
    }
}

fn spec(value: serde_json::Value) -> PollSpec {
    serde_json::from_value(value).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_until_done_with_growing_intervals() {
    let s = setup(job(3, "SUCCEEDED")).await;
    let options = json!({"field": "jobStatus.status", "done": ["SUCCEEDED"], "failed": ["FAILED"], "every": "5s"});
    let done = poll(&s.api, "/jobs/j1", &spec(options)).await.unwrap();
    assert_eq!(done["jobStatus"]["status"], "SUCCEEDED");
    assert_eq!(s.server.state.job_polls.load(SeqCst), 4);
    // 5 s + 7.5 s + 11.25 s between the four polls.
    let waited = s.clock.skipped();
    assert!(
        waited >= Duration::from_millis(23_700) && waited < Duration::from_secs(25),
        "{waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_state_raises_the_reason() {
    let s = setup(job(1, "FAILED")).await;
    let options = json!({"field": "jobStatus.status", "done": ["SUCCEEDED"], "failed": ["FAILED"], "every": "1s"});
    let err = poll(&s.api, "/jobs/j2", &spec(options)).await.unwrap_err();
    assert!(matches!(err, ApiError::JobFailed { .. }), "{err:?}");
    assert!(
        err.to_string().contains("disk full") && !err.retryable(),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_stops_polling() {
    let s = setup(job(1_000, "SUCCEEDED")).await;
    let options = json!({"field": "jobStatus.status", "done": ["SUCCEEDED"], "every": "5s", "max_every": "10s", "timeout": "1m"});
    let err = poll(&s.api, "/jobs/j3", &spec(options)).await.unwrap_err();
    assert!(matches!(err, ApiError::PollTimeout { .. }), "{err:?}");
    assert!(s.clock.skipped() <= Duration::from_secs(60));
    assert!(s.server.state.job_polls.load(SeqCst) >= 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_poll_and_catch_failures() {
    let s = setup(job(2, "FAILED")).await;
    let script = r#"
        let out = "finished";
        try {
            api.poll("/jobs/j4", #{ field: "jobStatus.status", done: ["SUCCEEDED"], failed: ["FAILED"], every: "2s" });
        } catch (e) {
            out = `${e.retryable}: ${e.message}`;
        }
        out
    "#;
    let out: String = run_script(&s.api, script).await.unwrap();
    assert!(
        out.starts_with("false: ") && out.contains("FAILED") && out.contains("disk full"),
        "{out}"
    );
}
