//! [`RateLimit`]: a tracing layer around the log writer that lets the first few identical
//! lines (same target, level, message and fields) through per interval and folds the rest
//! into one "N similar log lines suppressed" line, so a loop that logs the same thing
//! cannot fill a disk. It tracks at most [`MAX_TRACKED`] distinct lines at a time.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::callsite::{Callsite, Identifier};
use tracing::field::{Field, FieldSet, Value, Visit};
use tracing::metadata::Kind;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Identical lines let through per interval by default.
pub const DEFAULT_BURST: u32 = 5;
/// Default interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Most distinct lines tracked at once; past that, new lines pass untracked.
pub const MAX_TRACKED: usize = 1024;
/// Characters of a suppressed line quoted in its summary.
const SAMPLE_CHARS: usize = 160;

/// Where the layer reads the time (a test clock in tests).
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// Wraps the layer that writes log lines (`inner`), dropping floods of identical lines.
pub struct RateLimit<L> {
    inner: L,
    burst: u32,
    interval: Duration,
    clock: Clock,
    state: Mutex<State>,
}

struct Entry {
    window_start: Instant,
    passed: u32,
    suppressed: u64,
    sample: String,
}

struct State {
    entries: HashMap<u64, Entry>,
    last_sweep: Instant,
}

/// A summary line to write: how many lines like `sample` were dropped.
struct Summary {
    suppressed: u64,
    sample: String,
}

impl<L> RateLimit<L> {
    /// `inner` with the default burst and interval.
    pub fn new(inner: L) -> RateLimit<L> {
        RateLimit::with(
            inner,
            DEFAULT_BURST,
            DEFAULT_INTERVAL,
            Arc::new(Instant::now),
        )
    }

    /// `inner` letting `burst` identical lines through per `interval`, timed by `clock`.
    pub fn with(inner: L, burst: u32, interval: Duration, clock: Clock) -> RateLimit<L> {
        let now = clock();
        RateLimit {
            inner,
            burst: burst.max(1),
            interval,
            clock,
            state: Mutex::new(State {
                entries: HashMap::new(),
                last_sweep: now,
            }),
        }
    }

    /// Distinct lines tracked now (for tests of the memory bound).
    pub fn tracked(&self) -> usize {
        self.state.lock().map(|s| s.entries.len()).unwrap_or(0)
    }

    /// Whether `event` passes, and the summaries of expired floods to write first.
    fn decide(&self, event: &Event<'_>) -> (bool, Vec<Summary>) {
        let meta = event.metadata();
        if meta.target() == SUMMARY.target() {
            return (true, Vec::new());
        }
        let mut line = LineKey::default();
        event.record(&mut line);
        let mut h = DefaultHasher::new();
        (meta.target(), meta.level().as_str(), &line.text).hash(&mut h);
        let key = h.finish();
        let now = (self.clock)();
        let Ok(mut state) = self.state.lock() else {
            return (true, Vec::new());
        };
        let mut summaries = Vec::new();
        if now.duration_since(state.last_sweep) >= self.interval {
            state.last_sweep = now;
            self.expire(&mut state, now, &mut summaries);
        }
        if let Some(e) = state.entries.get_mut(&key) {
            if now.duration_since(e.window_start) >= self.interval {
                if e.suppressed > 0 {
                    summaries.push(Summary {
                        suppressed: e.suppressed,
                        sample: e.sample.clone(),
                    });
                }
                e.window_start = now;
                e.passed = 1;
                e.suppressed = 0;
                return (true, summaries);
            }
            if e.passed < self.burst {
                e.passed += 1;
                return (true, summaries);
            }
            e.suppressed += 1;
            return (false, summaries);
        }
        if state.entries.len() >= MAX_TRACKED {
            self.expire(&mut state, now, &mut summaries);
        }
        if state.entries.len() < MAX_TRACKED {
            let mut sample = format!("{}: ", meta.target());
            sample.extend(line.text.chars().take(SAMPLE_CHARS));
            state.entries.insert(
                key,
                Entry {
                    window_start: now,
                    passed: 1,
                    suppressed: 0,
                    sample,
                },
            );
        }
        (true, summaries)
    }

    /// Drops entries whose window has ended, collecting summaries of their floods.
    fn expire(&self, state: &mut State, now: Instant, summaries: &mut Vec<Summary>) {
        state.entries.retain(|_, e| {
            let live = now.duration_since(e.window_start) < self.interval;
            if !live && e.suppressed > 0 {
                summaries.push(Summary {
                    suppressed: e.suppressed,
                    sample: std::mem::take(&mut e.sample),
                });
            }
            live
        });
    }
}

/// The text of an event's message and fields, which identifies a line.
#[derive(Default)]
struct LineKey {
    text: String,
}

impl Visit for LineKey {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.text, "{value:?}");
        } else {
            let _ = write!(self.text, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.text.push_str(value);
        } else {
            let _ = write!(self.text, " {}={value:?}", field.name());
        }
    }
}

struct SummaryCallsite;

impl Callsite for SummaryCallsite {
    fn set_interest(&self, _: Interest) {}
    fn metadata(&self) -> &Metadata<'_> {
        &SUMMARY
    }
}

static SUMMARY_CALLSITE: SummaryCallsite = SummaryCallsite;

static SUMMARY: Metadata<'static> = Metadata::new(
    "log lines suppressed",
    "cxpipe::log_limit",
    Level::WARN,
    Some(file!()),
    Some(line!()),
    Some(module_path!()),
    FieldSet::new(&["message", "suppressed"], Identifier(&SUMMARY_CALLSITE)),
    Kind::EVENT,
);

impl<S, L> Layer<S> for RateLimit<L>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.inner.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.inner.on_layer(subscriber);
    }

    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        self.inner.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.enabled(metadata, ctx)
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        self.inner.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, span: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        self.inner.on_record(span, values, ctx);
    }

    fn on_follows_from(&self, span: &Id, follows: &Id, ctx: Context<'_, S>) {
        self.inner.on_follows_from(span, follows, ctx);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let (pass, summaries) = self.decide(event);
        for s in summaries {
            let fields = SUMMARY.fields();
            let (Some(message), Some(count)) =
                (fields.field("message"), fields.field("suppressed"))
            else {
                continue;
            };
            let text = format!(
                "{} similar log lines suppressed (like: {})",
                s.suppressed, s.sample
            );
            let values: [(&Field, Option<&dyn Value>); 2] = [
                (&message, Some(&text as &dyn Value)),
                (&count, Some(&s.suppressed as &dyn Value)),
            ];
            let value_set = fields.value_set(&values);
            self.inner
                .on_event(&Event::new(&SUMMARY, &value_set), ctx.clone());
        }
        if pass {
            self.inner.on_event(event, ctx);
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        self.inner.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        self.inner.on_exit(id, ctx);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        self.inner.on_close(id, ctx);
    }

    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        self.inner.on_id_change(old, new, ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    /// Records each event's message (and `suppressed` count) as a line.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<String>>>);

    impl<S: Subscriber> Layer<S> for Capture {
        fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
            let mut line = LineKey::default();
            event.record(&mut line);
            self.0.lock().unwrap().push(line.text);
        }
    }

    struct TestClock(Arc<Mutex<Instant>>);

    impl TestClock {
        fn new() -> (TestClock, Clock) {
            let now = Arc::new(Mutex::new(Instant::now()));
            let read = now.clone();
            (TestClock(now), Arc::new(move || *read.lock().unwrap()))
        }
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    #[test]
    fn a_flood_of_identical_lines_is_folded_into_one_summary() {
        let capture = Capture::default();
        let (clock, read) = TestClock::new();
        let layer = RateLimit::with(capture.clone(), 3, Duration::from_secs(10), read);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..10_000 {
                tracing::warn!(prefix = "../", "listing failed");
            }
            tracing::warn!(prefix = "a/", "listing failed");
            tracing::info!(prefix = "../", "listing failed");
            clock.advance(Duration::from_secs(11));
            tracing::warn!(prefix = "../", "listing failed");
        });
        let lines = capture.0.lock().unwrap().clone();
        let same = " prefix=\"../\"";
        let flood = format!("listing failed{same}");
        // 3 of the flood, the same text at INFO (another line), 1 after the interval.
        assert_eq!(
            lines.iter().filter(|l| **l == flood).count(),
            5,
            "{lines:?}"
        );
        assert!(lines.contains(&"listing failed prefix=\"a/\"".to_string()));
        let summary = lines
            .iter()
            .find(|l| l.contains("similar log lines suppressed"))
            .expect("a summary line");
        assert!(
            summary.starts_with("9997 similar log lines suppressed"),
            "{summary}"
        );
        assert!(summary.contains("suppressed=9997"), "{summary}");
        assert_eq!(lines.len(), 3 + 1 + 1 + 1 + 1, "{lines:?}");
    }

    #[test]
    fn memory_stays_bounded_under_distinct_lines() {
        let layer = Arc::new(RateLimit::new(Capture::default()));
        let subscriber = tracing_subscriber::registry().with(LayerRef(layer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..5 * MAX_TRACKED {
                tracing::warn!(i, "distinct");
            }
        });
        assert!(layer.tracked() <= MAX_TRACKED, "{}", layer.tracked());
    }

    /// Shares a layer with the test that inspects it.
    struct LayerRef<L>(Arc<L>);

    impl<S, L> Layer<S> for LayerRef<L>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        L: Layer<S>,
    {
        fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
            self.0.on_event(event, ctx);
        }
    }
}
