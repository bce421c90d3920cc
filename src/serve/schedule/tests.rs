//! Schedules and the scheduler. Loop tests run on paused tokio time with a [`TokioClock`],
//! so hours pass in an instant and every fire is seen at the instant it happened.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::ledger::Ledger;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn entry(pipeline: &str, expr: &str, misfire: Misfire) -> Entry {
    Entry {
        key: FireKey::new(pipeline, "acme"),
        schedule: Schedule::parse(expr, None).unwrap(),
        misfire,
        enabled: true,
    }
}

/// A started fire: key, scheduled time, the time the sink saw it.
type Seen = (FireKey, DateTime<Utc>, DateTime<Utc>);

/// A sink that records each fire with the time it saw it, and can play busy.
#[derive(Debug)]
struct Recorder {
    clock: TokioClock,
    busy: AtomicBool,
    fires: Mutex<Vec<Seen>>,
}

impl Recorder {
    fn new(clock: TokioClock) -> Arc<Recorder> {
        Arc::new(Recorder {
            clock,
            busy: AtomicBool::new(false),
            fires: Mutex::new(Vec::new()),
        })
    }

    /// (pipeline, scheduled, seen) of every started fire.
    fn fires(&self) -> Vec<(String, DateTime<Utc>, DateTime<Utc>)> {
        let fires = self.fires.lock().unwrap();
        fires
            .iter()
            .map(|(k, s, n)| (k.pipeline.clone(), *s, *n))
            .collect()
    }
}

impl FireSink for Recorder {
    fn fire(&self, key: &FireKey, scheduled: DateTime<Utc>) -> FireOutcome {
        if self.busy.load(Ordering::SeqCst) {
            return FireOutcome::SkippedBusy;
        }
        let seen = self.clock.now();
        self.fires
            .lock()
            .unwrap()
            .push((key.clone(), scheduled, seen));
        FireOutcome::Started
    }
}

struct Harness {
    sink: Arc<Recorder>,
    log: Arc<MemoryFireLog>,
    sched: Scheduler,
}

impl Harness {
    /// A scheduler whose wall clock starts at `start`, recording fires in `log`.
    fn new(start: &str, log: Arc<MemoryFireLog>) -> Harness {
        let clock = TokioClock::starting_at(at(start));
        let sink = Recorder::new(clock);
        let sched = Scheduler::new(log.clone(), sink.clone(), Arc::new(clock));
        Harness { sink, log, sched }
    }

    /// Runs the scheduler for `d` of (paused) tokio time.
    async fn run_for(&self, d: Duration) {
        let stop = CancellationToken::new();
        let sched = self.sched.clone();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move { sched.run(stop).await }
        });
        tokio::time::sleep(d).await;
        stop.cancel();
        task.await.unwrap();
    }

    fn stats(&self, pipeline: &str) -> FireStats {
        self.status(pipeline).stats
    }

    fn status(&self, pipeline: &str) -> KeyStatus {
        self.sched
            .status()
            .into_iter()
            .find(|s| s.key.pipeline == pipeline)
            .unwrap()
    }
}

/// Each fire was seen at its scheduled instant (the timer is exact to the millisecond).
fn assert_on_time(fires: &[(String, DateTime<Utc>, DateTime<Utc>)]) {
    for (p, scheduled, seen) in fires {
        let late = *seen - *scheduled;
        assert!(
            late >= chrono::Duration::zero() && late < chrono::Duration::milliseconds(10),
            "{p} scheduled at {scheduled} fired at {seen}"
        );
    }
}

#[test]
fn six_fields_have_seconds_and_five_fire_at_second_zero() {
    let six = Schedule::parse("*/2 * * * * *", None).unwrap();
    assert_eq!(
        six.next_after(at("2026-03-01T00:00:00.500Z")),
        Some(at("2026-03-01T00:00:02Z"))
    );
    let five = Schedule::parse("*/5 * * * *", None).unwrap();
    assert_eq!(
        five.next_after(at("2026-03-01T00:00:01Z")),
        Some(at("2026-03-01T00:05:00Z"))
    );
}

#[test]
fn a_berlin_schedule_follows_the_dst_changes() {
    let s = Schedule::parse("0 30 9 * * *", Some("Europe/Berlin")).unwrap();
    assert_eq!(s.zone(), "Europe/Berlin");
    // 09:30 CET is 08:30 UTC; from 29 March 2026 09:30 CEST is 07:30 UTC.
    let before = s.next_after(at("2026-03-28T00:00:00Z")).unwrap();
    assert_eq!(before, at("2026-03-28T08:30:00Z"));
    assert_eq!(s.next_after(before), Some(at("2026-03-29T07:30:00Z")));
    // And back on 25 October 2026.
    let summer = s.next_after(at("2026-10-24T00:00:00Z")).unwrap();
    assert_eq!(summer, at("2026-10-24T07:30:00Z"));
    assert_eq!(s.next_after(summer), Some(at("2026-10-25T08:30:00Z")));
}

#[test]
fn bad_schedules_name_the_expression_and_the_fault() {
    let err = Schedule::parse("* * *", None).unwrap_err().to_string();
    assert!(
        err.contains("\"* * *\"") && err.contains("3 field"),
        "{err}"
    );
    let err = Schedule::parse("0 0 25 * * *", None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"0 0 25 * * *\"") && err.contains("not a valid"),
        "{err}"
    );
    let err = Schedule::parse("0 0 0 30 2 *", None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("never fires"), "{err}");
    let err = Schedule::parse("0 * * * * *", Some("Mars/Olympus"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Mars/Olympus") && err.contains("IANA"),
        "{err}"
    );
    let err = "sometimes".parse::<Misfire>().unwrap_err().to_string();
    assert!(
        err.contains("sometimes") && err.contains("run_once"),
        "{err}"
    );
}

#[test]
fn describe_lists_the_next_fires_of_each_entry() {
    let mut off = entry("off", "0 0 * * * *", Misfire::Skip);
    off.enabled = false;
    let rows = describe(
        &[entry("on", "0 */30 * * * *", Misfire::RunOnce), off],
        at("2026-03-01T10:10:00Z"),
        3,
    );
    assert_eq!(
        rows[0].next,
        vec![
            at("2026-03-01T10:30:00Z"),
            at("2026-03-01T11:00:00Z"),
            at("2026-03-01T11:30:00Z")
        ]
    );
    assert_eq!(rows[0].misfire, "run_once");
    assert_eq!(rows[1].pipeline, "off");
    assert!(rows[1].next.is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_every_two_seconds_schedule_fires_every_two_seconds() {
    let h = Harness::new("2026-03-01T00:00:00.500Z", Arc::default());
    h.sched
        .set_entries(vec![entry("p", "*/2 * * * * *", Misfire::Skip)])
        .await
        .unwrap();
    h.run_for(Duration::from_millis(6_600)).await;
    let fires = h.sink.fires();
    let scheduled: Vec<_> = fires.iter().map(|f| f.1).collect();
    assert_eq!(
        scheduled,
        vec![
            at("2026-03-01T00:00:02Z"),
            at("2026-03-01T00:00:04Z"),
            at("2026-03-01T00:00:06Z")
        ]
    );
    assert_on_time(&fires);
    assert_eq!(h.stats("p").started, 3);
    assert_eq!(
        h.sched.next_fires(),
        vec![(FireKey::new("p", "acme"), at("2026-03-01T00:00:08Z"))]
    );
}

#[tokio::test(start_paused = true)]
async fn a_berlin_schedule_fires_at_the_right_utc_instant_across_dst() {
    let h = Harness::new("2026-03-28T06:00:00Z", Arc::default());
    let e = Entry {
        key: FireKey::new("daily", "acme"),
        schedule: Schedule::parse("0 30 9 * * *", Some("Europe/Berlin")).unwrap(),
        misfire: Misfire::Skip,
        enabled: true,
    };
    h.sched.set_entries(vec![e]).await.unwrap();
    h.run_for(Duration::from_secs(26 * 3600)).await;
    let fires = h.sink.fires();
    let scheduled: Vec<_> = fires.iter().map(|f| f.1).collect();
    assert_eq!(
        scheduled,
        vec![at("2026-03-28T08:30:00Z"), at("2026-03-29T07:30:00Z")]
    );
    assert_on_time(&fires);
}

#[tokio::test(start_paused = true)]
async fn a_fire_while_the_key_is_busy_is_skipped_and_counted() {
    let h = Harness::new("2026-03-01T00:00:01Z", Arc::default());
    h.sched
        .set_entries(vec![entry("p", "*/2 * * * * *", Misfire::Skip)])
        .await
        .unwrap();
    h.run_for(Duration::from_millis(1_500)).await; // fires at :02
    h.sink.busy.store(true, Ordering::SeqCst);
    h.run_for(Duration::from_millis(4_000)).await; // :04 and :06 while busy
    h.sink.busy.store(false, Ordering::SeqCst);
    h.run_for(Duration::from_millis(2_000)).await; // :08
    let scheduled: Vec<_> = h.sink.fires().iter().map(|f| f.1).collect();
    assert_eq!(
        scheduled,
        vec![at("2026-03-01T00:00:02Z"), at("2026-03-01T00:00:08Z")]
    );
    let stats = h.stats("p");
    assert_eq!((stats.started, stats.skipped_busy), (2, 2));
    // A skipped fire is a fire: the last fire moved on through it.
    assert_eq!(h.status("p").last_fire, Some(at("2026-03-01T00:00:08Z")));
}

#[tokio::test(start_paused = true)]
async fn misfires_after_downtime_are_skipped_or_run_once_per_policy() {
    let log = Arc::new(MemoryFireLog::default());
    // Both last fired at midnight; the process was down until 03:30.
    log.record(FireKey::new("skips", "acme"), at("2026-03-01T00:00:00Z"));
    log.record(
        FireKey::new("catches_up", "acme"),
        at("2026-03-01T00:00:00Z"),
    );
    let h = Harness::new("2026-03-01T03:30:00Z", log);
    h.sched
        .set_entries(vec![
            entry("skips", "0 0 * * * *", Misfire::Skip),
            entry("catches_up", "0 0 * * * *", Misfire::RunOnce),
        ])
        .await
        .unwrap();
    h.run_for(Duration::from_secs(60)).await;
    let fires = h.sink.fires();
    // One catch-up fire, at start, for the latest missed time (03:00).
    assert_eq!(fires.len(), 1, "{fires:?}");
    assert_eq!(fires[0].0, "catches_up");
    assert_eq!(fires[0].1, at("2026-03-01T03:00:00Z"));
    assert_eq!(fires[0].2, at("2026-03-01T03:30:00Z"));
    assert_eq!(h.stats("skips").missed, 3);
    assert_eq!(h.stats("catches_up").missed, 2);
    for (_, next) in h.sched.next_fires() {
        assert_eq!(next, at("2026-03-01T04:00:00Z"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_restart_does_not_repeat_a_fire_already_done() {
    let log = Arc::new(MemoryFireLog::default());
    let key = FireKey::new("p", "acme");
    log.record(key.clone(), at("2026-03-01T00:00:00Z"));
    let first = Harness::new("2026-03-01T03:30:00Z", log.clone());
    first
        .sched
        .set_entries(vec![entry("p", "0 0 * * * *", Misfire::RunOnce)])
        .await
        .unwrap();
    first.run_for(Duration::from_secs(5)).await;
    assert_eq!(first.sink.fires().len(), 1, "the catch-up fire");
    // Restarted ten minutes later: the catch-up is done, nothing is missed since.
    let second = Harness::new("2026-03-01T03:40:00Z", log.clone());
    second
        .sched
        .set_entries(vec![entry("p", "0 0 * * * *", Misfire::RunOnce)])
        .await
        .unwrap();
    second.run_for(Duration::from_secs(60)).await;
    assert!(second.sink.fires().is_empty(), "{:?}", second.sink.fires());
    assert_eq!(
        second.status("p").last_fire,
        Some(at("2026-03-01T03:00:00Z"))
    );
    // Restarted exactly at a fire another process already claimed: not fired again.
    second.log.record(key.clone(), at("2026-03-01T04:00:00Z"));
    let third = Harness::new("2026-03-01T03:59:59Z", second.log.clone());
    third
        .sched
        .set_entries(vec![entry("p", "0 0 * * * *", Misfire::RunOnce)])
        .await
        .unwrap();
    third.run_for(Duration::from_secs(30)).await;
    assert!(third.sink.fires().is_empty(), "{:?}", third.sink.fires());
    assert_eq!(
        third.status("p").next_fire,
        Some(at("2026-03-01T05:00:00Z"))
    );
}

#[tokio::test(start_paused = true)]
async fn replacing_the_entries_keeps_each_keys_last_fire_and_counts() {
    let h = Harness::new("2026-03-01T00:00:01Z", Arc::default());
    h.sched
        .set_entries(vec![entry("p", "*/2 * * * * *", Misfire::Skip)])
        .await
        .unwrap();
    h.run_for(Duration::from_millis(4_500)).await; // :02, :04
    assert_eq!(h.stats("p").started, 2);
    // A config reload at :05.5: p every 7 s now, and a new pipeline q.
    h.sched
        .set_entries(vec![
            entry("p", "*/7 * * * * *", Misfire::Skip),
            entry("q", "*/3 * * * * *", Misfire::Skip),
        ])
        .await
        .unwrap();
    let p = h.status("p");
    assert_eq!(p.stats.started, 2);
    assert_eq!(p.last_fire, Some(at("2026-03-01T00:00:04Z")));
    assert_eq!(p.next_fire, Some(at("2026-03-01T00:00:07Z")));
    h.run_for(Duration::from_millis(5_000)).await; // until :10.5
    let fired: Vec<_> = h
        .sink
        .fires()
        .into_iter()
        .skip(2)
        .map(|(p, s, _)| (p, s))
        .collect();
    assert_eq!(
        fired,
        vec![
            ("q".to_string(), at("2026-03-01T00:00:06Z")),
            ("p".to_string(), at("2026-03-01T00:00:07Z")),
            ("q".to_string(), at("2026-03-01T00:00:09Z")),
        ]
    );
    assert_eq!(h.stats("p").started, 3);
    // Dropping p and adding it back later reads its last fire from the log.
    h.sched
        .set_entries(vec![entry("q", "*/3 * * * * *", Misfire::Skip)])
        .await
        .unwrap();
    assert!(h.sched.status().iter().all(|s| s.key.pipeline == "q"));
    h.sched
        .set_entries(vec![
            entry("p", "*/7 * * * * *", Misfire::Skip),
            entry("q", "*/3 * * * * *", Misfire::Skip),
        ])
        .await
        .unwrap();
    assert_eq!(h.status("p").last_fire, Some(at("2026-03-01T00:00:07Z")));
}

#[tokio::test]
async fn with_the_ledger_a_catch_up_fire_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let key = FireKey::new("p", "acme");
    let hourly = || entry("p", "0 0 * * * *", Misfire::RunOnce);
    let start = at("2026-03-01T03:30:00Z");
    {
        let ledger = Ledger::open_dir(dir.path()).await.unwrap();
        ledger
            .claim_fire("p", "acme", at("2026-03-01T00:00:00Z"))
            .await
            .unwrap();
        let clock = TokioClock::starting_at(start);
        let sink = Recorder::new(clock);
        let sched = Scheduler::new(Arc::new(ledger), sink.clone(), Arc::new(clock));
        sched.set_entries(vec![hourly()]).await.unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (sched, stop) = (sched.clone(), stop.clone());
            async move { sched.run(stop).await }
        });
        for _ in 0..500 {
            if !sink.fires().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.cancel();
        task.await.unwrap();
        assert_eq!(sink.fires().len(), 1, "the catch-up fire within 5 s");
    }
    let ledger = Ledger::open_dir(dir.path()).await.unwrap();
    assert_eq!(
        FireLog::last_fire(&ledger, &key).await.unwrap(),
        Some(at("2026-03-01T03:00:00Z"))
    );
    let clock = TokioClock::starting_at(start);
    let sink = Recorder::new(clock);
    let sched = Scheduler::new(Arc::new(ledger), sink.clone(), Arc::new(clock));
    sched.set_entries(vec![hourly()]).await.unwrap();
    assert_eq!(
        sched.next_fires(),
        vec![(key, at("2026-03-01T04:00:00Z"))],
        "no catch-up pending after the restart"
    );
}
