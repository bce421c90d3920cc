//! The scripting reference (`cxpipe docs`): docs/SCRIPTING.md generated from the engine's
//! own metadata (every registered function and type with its `///` doc and example), plus
//! the tables below for what metadata cannot know (hooks, `OPTIONS`, the summary `finish`
//! receives, the error map). Tests hold each table to the code it describes, and compile
//! every example with the checks `cxpipe check` runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rhai::Engine;
use serde_json::Value;

/// A hook the runner calls, and its contract.
pub struct HookDoc {
    pub name: &'static str,
    pub signature: &'static str,
    pub contract: &'static str,
    pub example: &'static str,
}

/// The hooks (their names and arities are those `cxpipe check` requires).
pub const HOOKS: &[HookDoc] = &[
    HookDoc {
        name: "discover",
        signature: "fn discover(ctx)",
        contract: "Called once per run, first, within `OPTIONS.discover_timeout`. Lists the work \
                   and calls `ctx.emit(key, item)` once per item; keys already done, skipped or \
                   quarantined in the ledger are not processed again, and the first emit of a \
                   key wins. Items start processing while `discover` still runs. Its return \
                   value is ignored; an error fails the run (checkpoints are then held back). \
                   A pipeline needs `discover` or `on_event`.",
        example: "fn discover(ctx) {\n    let since = ctx.checkpoint(\"newest\") ?? \"2024-01-01T00:00:00Z\";\n    for rec in ctx.api.paginate([\"api\", \"v2\", \"recording\", \"search\"], #{ method: \"POST\", body: #{ since: since }, style: \"cursor\", items: \"data\", next: \"nextPageToken\", param: \"pageToken\" }) {\n        ctx.emit(rec.recordingId, rec);\n    }\n}",
    },
    HookDoc {
        name: "process",
        signature: "fn process(ctx, item)",
        contract: "Required. Called for each item (up to `OPTIONS.concurrency` at once), with the \
                   item emitted for it and `ctx.item_key`, `ctx.attempt`, `ctx.deferrals` set; \
                   must finish within `OPTIONS.item_timeout` and `OPTIONS.max_operations`. \
                   Return `ctx.skip(reason)` (nothing to do), `ctx.defer(delay, reason)` (try \
                   again later), or anything else (done; the value is kept in the ledger). An \
                   error fails the attempt: retried after `retry_backoff` (doubling up to \
                   `retry_backoff_max`) unless it is a map with `retryable: false`, and \
                   quarantined after `max_attempts`. `ctx.emit` is refused here.",
        example: "fn process(ctx, item) {\n    if ctx.store.exists(`metadata/${ctx.item_key}.json`) {\n        return ctx.skip(\"already archived\");\n    }\n    from_json(item).write(ctx.store, `metadata/${ctx.item_key}.json`)\n}",
    },
    HookDoc {
        name: "finish",
        signature: "fn finish(ctx, summary)",
        contract: "Optional. Called once after every item ended (or the run stopped), with the \
                   run's summary (fields below). Its return value, when not `()`, is the \
                   run's report (`--json` prints it as `report`); an error marks the run \
                   failed. Checkpoints are already decided when it runs.",
        example: "fn finish(ctx, summary) {\n    ctx.store.write_json(`reports/${summary.run_id}.json`, summary);\n    #{ archived: summary.done, failed: summary.quarantined }\n}",
    },
    HookDoc {
        name: "on_event",
        signature: "fn on_event(ctx, event)",
        contract: "Optional. Called for each event delivered to the pipeline (a webhook's JSON \
                   body, as a map); like `discover`, it may only `ctx.emit` items for \
                   `process` and must not do long work itself. Duplicate deliveries of a key \
                   are one item. A pipeline needs `discover` or `on_event`.",
        example: "fn on_event(ctx, event) {\n    if event.eventType == \"media.recording.created\" {\n        ctx.emit(event.recordingId, event);\n    }\n}",
    },
];

/// One `OPTIONS` key.
pub struct OptionDoc {
    pub name: &'static str,
    /// The default, written as a script would write it.
    pub default: &'static str,
    pub meaning: &'static str,
}

/// Every key of `const OPTIONS = #{ ... }` ([`crate::runner::PipelineOptions`]).
pub const OPTIONS: &[OptionDoc] = &[
    OptionDoc {
        name: "concurrency",
        default: "4",
        meaning: "Items processed at once (worker threads), at most 1024.",
    },
    OptionDoc {
        name: "max_attempts",
        default: "3",
        meaning: "Attempts of `process` before an item is quarantined (a map thrown with \
                  `retryable: false` quarantines at once).",
    },
    OptionDoc {
        name: "retry_backoff",
        default: "\"1s\"",
        meaning: "Delay before the first retry of a failed item; doubles each attempt \
                  (jittered), capped at `retry_backoff_max`.",
    },
    OptionDoc {
        name: "retry_backoff_max",
        default: "\"5m\"",
        meaning: "Longest delay between retries of an item.",
    },
    OptionDoc {
        name: "item_timeout",
        default: "\"10m\"",
        meaning: "Deadline of one `process` call; native calls (API, flows, stores) end by it \
                  too. A timed-out attempt is retried like a failure.",
    },
    OptionDoc {
        name: "discover_timeout",
        default: "\"1h\"",
        meaning: "Deadline of the `discover` call; a loop there fails the run instead of \
                  running on.",
    },
    OptionDoc {
        name: "interrupt_grace",
        default: "\"10s\"",
        meaning: "On Ctrl-C or SIGTERM, how long items already running may take to finish \
                  before the run ends anyway (their items are released for the next run).",
    },
    OptionDoc {
        name: "max_operations",
        default: "500000000",
        meaning: "Most Rhai operations one `process` call may run; a runaway loop fails the \
                  attempt instead of holding a worker.",
    },
    OptionDoc {
        name: "defer_max_wait",
        default: "\"5m\"",
        meaning: "A deferred item is tried again within the run when its delay is at most \
                  this long; a longer delay leaves it deferred in the ledger for a later run.",
    },
    OptionDoc {
        name: "max_defers",
        default: "50",
        meaning: "Deferrals of one item within a run before it is left deferred for the next \
                  run.",
    },
    OptionDoc {
        name: "defer_linger",
        default: "\"10s\"",
        meaning: "Once nothing else is left to do, how long the run waits for deferred items \
                  to fall due; when none is due within it, the run ends and leaves them \
                  `deferred` in the ledger for the next run (`deferred_left`, `next_due`).",
    },
];

/// A field of a map scripts receive.
pub struct FieldDoc {
    pub name: &'static str,
    pub meaning: &'static str,
}

/// The fields of the summary `finish(ctx, summary)` receives
/// ([`crate::runner::summary::Summary`]).
pub const SUMMARY_FIELDS: &[FieldDoc] = &[
    FieldDoc {
        name: "run_id",
        meaning: "This run's id (as `ctx.run_id`).",
    },
    FieldDoc {
        name: "pipeline",
        meaning: "The pipeline's name.",
    },
    FieldDoc {
        name: "tenant",
        meaning: "The tenant's name.",
    },
    FieldDoc {
        name: "script_hash",
        meaning: "SHA-256 (hex) of the script's source.",
    },
    FieldDoc {
        name: "started_at",
        meaning: "When the run started, RFC 3339 UTC.",
    },
    FieldDoc {
        name: "duration_ms",
        meaning: "How long the run took until `finish`, in milliseconds.",
    },
    FieldDoc {
        name: "status",
        meaning: "`completed` (every item done, skipped or deferred), `completed_with_failures` \
                  (some quarantined or failed), `failed` (discover, the ledger or the run itself \
                  failed) or `interrupted` (Ctrl-C or SIGTERM; unfinished items were released).",
    },
    FieldDoc {
        name: "emitted",
        meaning: "Emits by `discover` (including keys already done, and repeated keys).",
    },
    FieldDoc {
        name: "duplicates",
        meaning: "Emits of a key this discovery had already emitted (the first emit wins).",
    },
    FieldDoc {
        name: "admitted",
        meaning: "Emitted keys this run took on.",
    },
    FieldDoc {
        name: "already_done",
        meaning: "Emitted keys not taken on: done, skipped or quarantined by an earlier run, \
                  waiting until due, or already taken on as resumed.",
    },
    FieldDoc {
        name: "resumed",
        meaning: "Unfinished items from earlier runs taken on by this one.",
    },
    FieldDoc {
        name: "claimed",
        meaning: "Items this run claimed from the ledger (`cxpipe serve` as a cluster node: \
                  admitted by the leading run, left by earlier runs, or taken over from a \
                  node that died; absent when 0).",
    },
    FieldDoc {
        name: "other_nodes",
        meaning: "What runs on other nodes finished of this pipeline × tenant while this \
                  run led it, by state (absent outside a cluster).",
    },
    FieldDoc {
        name: "done",
        meaning: "Items `process` finished.",
    },
    FieldDoc {
        name: "skipped",
        meaning: "Items `process` skipped (`ctx.skip`).",
    },
    FieldDoc {
        name: "deferred",
        meaning: "Items left deferred in the ledger for a later run.",
    },
    FieldDoc {
        name: "quarantined",
        meaning: "Items that failed `max_attempts` times or with `retryable: false`.",
    },
    FieldDoc {
        name: "failed",
        meaning: "Items whose attempt failed inside cxpipe (a panic); left failed for the next run.",
    },
    FieldDoc {
        name: "retries",
        meaning: "Item retries: attempts of `process` that failed and were tried again (HTTP \
                  retries inside one attempt are in `metrics[\"api.retries\"]`).",
    },
    FieldDoc {
        name: "deferrals",
        meaning: "`ctx.defer` outcomes, counting each deferral of an item.",
    },
    FieldDoc {
        name: "bytes_written",
        meaning: "Bytes of objects committed to the pipeline's stores (`ctx.store`, \
                  `ctx.stores`): data, manifests and documents.",
    },
    FieldDoc {
        name: "deferred_left",
        meaning: "Items of this pipeline × tenant left `deferred` in the ledger after the run \
                  (by it or earlier runs); the next run takes them up once due.",
    },
    FieldDoc {
        name: "next_due",
        meaning: "When the earliest of them falls due (RFC 3339 UTC), or `()` when none waits.",
    },
    FieldDoc {
        name: "skip_reasons",
        meaning: "Map of skip reason to count.",
    },
    FieldDoc {
        name: "failures",
        meaning: "Array of `#{ key, attempts, error }` for quarantined or failed items (at most 100; all are in the ledger).",
    },
    FieldDoc {
        name: "metrics",
        meaning: "Sums of `ctx.metric(name, value)` by name; whole numbers are integers.",
    },
    FieldDoc {
        name: "checkpoint",
        meaning: "What became of the checkpoints the run set: `none set`, `committed`, or \
                  `held back (failures)`, `held back (interrupted)`, `held back (run failed)`.",
    },
    FieldDoc {
        name: "checkpoint_committed",
        meaning: "`checkpoint == \"committed\"` (kept for scripts that read it).",
    },
    FieldDoc {
        name: "error",
        meaning: "Why the run failed; `()` when it did not.",
    },
];

/// The fields of the map every native failure raises ([`crate::natives::thrown`]).
pub const ERROR_FIELDS: &[FieldDoc] = &[
    FieldDoc {
        name: "message",
        meaning: "What failed and why, naming the thing and the fix.",
    },
    FieldDoc {
        name: "status",
        meaning: "The HTTP status when a server answered; `()` otherwise.",
    },
    FieldDoc {
        name: "retryable",
        meaning: "Whether trying the item again may succeed; a failed `process` is retried only when true.",
    },
    FieldDoc {
        name: "request_id",
        meaning: "The server's request id when it sent one; `()` otherwise.",
    },
    FieldDoc {
        name: "bytes_received",
        meaning: "Downloads (`fetch`, `ctx.api.fetch`) only: bytes received before the failure.",
    },
];

/// Variables the examples may use: they are compiled inside `fn process(ctx, item)` after
/// these lines (the reference says so).
pub const EXAMPLE_PRELUDE: &str = "let id = \"42\"; let ids = [\"42\", \"43\"]; \
     let job_id = \"job-1\"; let hook_id = \"hook-1\"; \
     let url = \"https://media.example/rec.wav\"; let key = \"recordings/42.wav\";";

/// How a registered function is reached from a script.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FnKind {
    /// `receiver.name` (a property).
    Property,
    /// `receiver[name]` (an indexer).
    Indexer,
    /// `receiver.name(args)` (a method; the receiver is the first parameter).
    Method,
    /// `name(args)`.
    Function,
}

/// One registered function, as the reference shows it.
#[derive(Clone, Debug)]
pub struct FnDoc {
    /// The name scripts write (`tenant` for the property `get$tenant`).
    pub name: String,
    pub kind: FnKind,
    /// The receiver's type for properties, indexers and methods.
    pub receiver: Option<String>,
    /// `name: Type` of each parameter scripts pass (the receiver not counted).
    pub params: Vec<String>,
    pub returns: String,
    /// The doc text without its examples.
    pub doc: String,
    /// The ```rhai examples of the doc.
    pub examples: Vec<String>,
}

impl FnDoc {
    /// How a script writes a call, e.g. `Api.get(path: String, query: Map) -> ?`.
    pub fn usage(&self) -> String {
        let returns = match self.returns.as_str() {
            "" | "()" => String::new(),
            r => format!(" -> {r}"),
        };
        let recv = self.receiver.as_deref().unwrap_or("");
        match self.kind {
            FnKind::Property => format!("{recv}.{}{returns}", self.name),
            FnKind::Indexer => format!("{recv}[{}]{returns}", self.params.join(", ")),
            FnKind::Method => format!("{recv}.{}({}){returns}", self.name, self.params.join(", ")),
            FnKind::Function => format!("{}({}){returns}", self.name, self.params.join(", ")),
        }
    }
}

/// A registered type and its doc.
#[derive(Clone, Debug)]
pub struct TypeDoc {
    pub name: String,
    pub doc: String,
}

/// Why the engine's metadata could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading the script engine's function metadata: {0}")]
pub struct MetadataError(#[from] serde_json::Error);

fn metadata(engine: &Engine) -> Result<Value, MetadataError> {
    Ok(serde_json::from_str(
        &engine.gen_fn_metadata_to_json(false)?,
    )?)
}

/// Doc comment lines without their `///` markers.
fn comment_text(lines: Option<&Value>) -> Vec<String> {
    let Some(Value::Array(lines)) = lines else {
        return Vec::new();
    };
    lines
        .iter()
        .filter_map(Value::as_str)
        .flat_map(|block| block.lines().map(str::to_string).collect::<Vec<_>>())
        .map(|line| {
            let line = line.trim_start();
            let line = line.strip_prefix("///").unwrap_or(line);
            line.strip_prefix(' ')
                .unwrap_or(line)
                .trim_end()
                .to_string()
        })
        .collect()
}

/// Splits doc lines into the text and the ```rhai examples.
fn split_examples(lines: &[String]) -> (String, Vec<String>) {
    let (mut text, mut examples) = (Vec::new(), Vec::new());
    let mut current: Option<Vec<&str>> = None;
    for line in lines {
        match (&mut current, line.trim()) {
            (None, "```rhai") => current = Some(Vec::new()),
            (Some(code), "```") => {
                examples.push(code.join("\n"));
                current = None;
            }
            (Some(code), _) => code.push(line),
            (None, _) => text.push(line.as_str()),
        }
    }
    let text = text.join("\n").trim().to_string();
    (text, examples)
}

/// The name a script author knows for a Rust type of the metadata: `Result<T, ..>` is
/// `T`, strings are `String`, `i64` is `int`, a custom type its registered name.
fn type_name(text: &str, custom: &BTreeMap<String, String>) -> String {
    let mut t: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    for prefix in ["&mut", "&", "rhai::"] {
        if let Some(rest) = t.strip_prefix(prefix) {
            t = rest.to_string();
        }
    }
    for wrapper in ["RhaiResult<", "RhaiResultOf<", "Result<"] {
        if let Some(inner) = t.strip_prefix(wrapper).and_then(|r| r.strip_suffix('>')) {
            let inner = inner.strip_suffix(",Box<EvalAltResult>").unwrap_or(inner);
            return type_name(inner, custom);
        }
    }
    let last = t.rsplit("::").next().unwrap_or(&t).to_string();
    match last.as_str() {
        "" | "()" => "()".into(),
        "RhaiResult" | "Dynamic" => "any".into(),
        "str" | "String" | "ImmutableString" => "String".into(),
        "i64" | "INT" => "int".into(),
        "f64" | "FLOAT" => "float".into(),
        "bool" => "bool".into(),
        "FnPtr" => "Fn".into(),
        other => custom
            .get(other)
            .cloned()
            .unwrap_or_else(|| other.to_string()),
    }
}

/// Rust type names (last path segment) of the registered types, to the names scripts see.
fn custom_names(meta: &Value) -> BTreeMap<String, String> {
    meta["customTypes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let rust = t["typeName"].as_str()?;
            let shown = t["displayName"].as_str()?;
            let last = rust.rsplit("::").next().unwrap_or(rust);
            Some((last.to_string(), shown.to_string()))
        })
        .collect()
}

/// Every registered (non-standard) function, sorted by receiver, then name.
pub fn functions(engine: &Engine) -> Result<Vec<FnDoc>, MetadataError> {
    let meta = metadata(engine)?;
    let custom = custom_names(&meta);
    let mut out = Vec::new();
    for f in meta["functions"].as_array().into_iter().flatten() {
        let raw = f["name"].as_str().unwrap_or_default();
        let params: Vec<String> = f["params"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let name = p["name"].as_str().unwrap_or("_");
                let typ = p["type"]
                    .as_str()
                    .map(|t| type_name(t, &custom))
                    .unwrap_or("any".into());
                format!("{name}: {typ}")
            })
            .collect();
        let receiver_type = || {
            f["params"][0]["type"]
                .as_str()
                .map(|t| type_name(t, &custom))
                .unwrap_or_default()
        };
        let (name, kind) = if let Some(prop) = raw.strip_prefix("get$") {
            (prop.to_string(), FnKind::Property)
        } else if raw == "index$get$" {
            ("[]".to_string(), FnKind::Indexer)
        } else if !params.is_empty()
            && f["params"][0]["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("&mut"))
        {
            (raw.to_string(), FnKind::Method)
        } else {
            (raw.to_string(), FnKind::Function)
        };
        let receiver = (kind != FnKind::Function).then(receiver_type);
        let params = if kind == FnKind::Function {
            params
        } else {
            params.into_iter().skip(1).collect()
        };
        let (doc, examples) = split_examples(&comment_text(f.get("docComments")));
        out.push(FnDoc {
            name,
            kind,
            receiver,
            params,
            returns: f["returnType"]
                .as_str()
                .map(|t| type_name(t, &custom))
                .unwrap_or_default(),
            doc,
            examples,
        });
    }
    // The metadata lists overloads in no fixed order; the reference must not change
    // between builds.
    out.sort_by(|a, b| {
        (&a.receiver, &a.kind, &a.name, a.params.len(), &a.params).cmp(&(
            &b.receiver,
            &b.kind,
            &b.name,
            b.params.len(),
            &b.params,
        ))
    });
    Ok(out)
}

/// Every registered type with its doc, sorted by name.
pub fn types(engine: &Engine) -> Result<Vec<TypeDoc>, MetadataError> {
    let meta = metadata(engine)?;
    let mut by_name = BTreeMap::new();
    for t in meta["customTypes"].as_array().into_iter().flatten() {
        let name = t["displayName"].as_str().unwrap_or_default().to_string();
        let doc = comment_text(t.get("docComments"))
            .join("\n")
            .trim()
            .to_string();
        let entry: &mut String = by_name.entry(name).or_default();
        if entry.is_empty() {
            *entry = doc;
        }
    }
    Ok(by_name
        .into_iter()
        .map(|(name, doc)| TypeDoc { name, doc })
        .collect())
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn write_fn(out: &mut String, f: &FnDoc) {
    let _ = writeln!(out, "#### `{}`\n", f.usage());
    if !f.doc.is_empty() {
        let _ = writeln!(out, "{}\n", f.doc);
    }
    for example in &f.examples {
        let _ = writeln!(out, "```rhai\n{example}\n```\n");
    }
}

/// Where scripts find each section, by receiver type.
const SECTIONS: &[(&str, &str)] = &[
    ("Ctx", "`ctx`: the context every hook receives"),
    ("Kv", "`ctx.kv`: durable state"),
    ("Stores", "`ctx.stores`: granted stores by name"),
    ("Api", "`ctx.api`: the tenant's API"),
    ("Pages", "`Pages`"),
    ("Flow", "Flows: stages and sinks"),
    ("Store", "Stores: `ctx.store`, `ctx.stores.NAME`"),
];

/// docs/SCRIPTING.md, generated from `engine` and the tables above.
pub fn reference(engine: &Engine) -> Result<String, MetadataError> {
    let fns = functions(engine)?;
    let types = types(engine)?;
    let mut out = String::new();
    out.push_str(
        "# Scripting reference\n\n\
         <!-- Generated by `cxpipe docs` from the engine's metadata and the tables in \
         src/engine/docs.rs. Do not edit by hand: run `cxpipe docs` (or `cargo run -- docs`) \
         to regenerate. -->\n\n\
         A pipeline is a Rhai script that defines hooks the runner calls, a few `OPTIONS`, and \
         calls the functions below. Durations are always strings such as `\"30s\"`, \
         `\"250ms\"` or `\"5m\"`; instants are milliseconds since the epoch (`now_ms()`); \
         \"absent\" is always `()` (use `value ?? default`). Every failure of a native call \
         is a catchable map (see [Errors](#errors)).\n\n\
         Examples run inside `fn process(ctx, item)` with these variables: `",
    );
    out.push_str(EXAMPLE_PRELUDE);
    out.push_str(
        "`. `cxpipe check SCRIPT` checks a script against this surface; `cxpipe docs \
         --definitions DIR` writes definition files for editor completion (see README).\n\n",
    );

    out.push_str("## Hooks\n\n");
    for hook in HOOKS {
        let _ = writeln!(
            out,
            "### `{}`\n\n{}\n\n```rhai\n{}\n```\n",
            hook.signature,
            one_line(hook.contract),
            hook.example
        );
    }

    out.push_str(
        "## OPTIONS\n\nDeclared as `const OPTIONS = #{ concurrency: 8, item_timeout: \"2m\" };`. \
         Unknown keys are errors.\n\n| key | default | meaning |\n|---|---|---|\n",
    );
    for o in OPTIONS {
        let _ = writeln!(
            out,
            "| `{}` | `{}` | {} |",
            o.name,
            o.default,
            one_line(o.meaning)
        );
    }

    out.push_str("\n## Types\n\n| type | what it is |\n|---|---|\n");
    for t in &types {
        let _ = writeln!(out, "| `{}` | {} |", t.name, one_line(&t.doc));
    }
    out.push('\n');

    for (receiver, title) in SECTIONS {
        let members: Vec<&FnDoc> = fns
            .iter()
            .filter(|f| f.receiver.as_deref() == Some(*receiver))
            .collect();
        if members.is_empty() {
            continue;
        }
        let _ = writeln!(out, "## {title}\n");
        for f in members {
            write_fn(&mut out, f);
        }
    }
    let others: Vec<&FnDoc> = fns
        .iter()
        .filter(|f| {
            f.receiver
                .as_deref()
                .is_some_and(|r| !SECTIONS.iter().any(|(s, _)| *s == r))
        })
        .collect();
    if !others.is_empty() {
        out.push_str("## Other methods\n\n");
        for f in others {
            write_fn(&mut out, f);
        }
    }
    out.push_str("## Functions\n\n");
    for f in fns.iter().filter(|f| f.kind == FnKind::Function) {
        write_fn(&mut out, f);
    }

    out.push_str(
        "## The summary `finish` receives\n\n`finish(ctx, summary)` receives this map (the \
         same as `cxpipe run --json` prints as `summary`).\n\n| field | meaning |\n|---|---|\n",
    );
    for field in SUMMARY_FIELDS {
        let _ = writeln!(out, "| `{}` | {} |", field.name, one_line(field.meaning));
    }
    out.push_str(
        "\n## Errors\n\nEvery failure of a native call (API, flows, stores, time) is a map a \
         script can catch:\n\n```rhai\ntry {\n    ctx.api.get([\"api\", \"v2\", \"recording\", id])\n} \
         catch (e) {\n    if e.status == 404 { return ctx.skip(\"gone\"); }\n    throw e;\n}\n```\n\n\
         | field | meaning |\n|---|---|\n",
    );
    for field in ERROR_FIELDS {
        let _ = writeln!(out, "| `{}` | {} |", field.name, one_line(field.meaning));
    }
    out.push_str(
        "\nA script throws the same shape: `throw #{ message: \"...\", retryable: false };` \
         quarantines the item at once; any other thrown value is retryable.\n",
    );
    Ok(out)
}

/// Every example of the reference, named by what it documents, each a whole script that
/// `cxpipe check` accepts when the example is right.
pub fn example_scripts(engine: &Engine) -> Result<Vec<(String, String)>, MetadataError> {
    let mut out = Vec::new();
    for f in functions(engine)? {
        for (i, example) in f.examples.iter().enumerate() {
            out.push((
                format!("{}#{}", f.usage(), i + 1),
                format!(
                    "fn discover(ctx) {{}}\nfn process(ctx, item) {{\n{EXAMPLE_PRELUDE}\n{example}\n}}\n"
                ),
            ));
        }
    }
    for hook in HOOKS {
        let mut script = hook.example.to_string();
        for other in ["discover", "process"] {
            if other != hook.name {
                let (_, params) = hook_params(other);
                let _ = write!(script, "\nfn {other}({params}) {{}}");
            }
        }
        out.push((format!("hook {}", hook.name), script));
    }
    Ok(out)
}

fn hook_params(name: &str) -> (&'static str, &'static str) {
    match name {
        "discover" => ("discover", "ctx"),
        _ => ("process", "ctx, item"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::{EngineSettings, Script, check};
    use crate::runner::PipelineOptions;

    fn engine() -> Engine {
        crate::registry::build_engine(
            &EngineSettings::default(),
            Arc::new(crate::keys::KeyRing::empty()),
        )
    }

    #[test]
    fn every_registered_function_has_a_doc_and_an_example_in_the_reference() {
        let engine = engine();
        let fns = functions(&engine).unwrap();
        assert!(fns.len() > 60, "only {} functions found", fns.len());
        let reference = reference(&engine).unwrap();
        let missing: Vec<String> = fns
            .iter()
            .filter(|f| f.doc.is_empty() || f.examples.is_empty())
            .map(FnDoc::usage)
            .collect();
        assert!(
            missing.is_empty(),
            "registered without a `///` doc and a ```rhai example: {missing:#?}"
        );
        for f in &fns {
            assert!(
                reference.contains(&format!("#### `{}`", f.usage())),
                "{} is not in the reference",
                f.usage()
            );
        }
        for t in types(&engine).unwrap() {
            assert!(!t.doc.is_empty(), "type {} has no doc", t.name);
        }
    }

    #[test]
    fn every_example_passes_the_checks_of_cxpipe_check() {
        let engine = engine();
        let mut problems = Vec::new();
        let examples = example_scripts(&engine).unwrap();
        assert!(examples.len() > 60, "only {} examples", examples.len());
        for (label, source) in examples {
            match Script::compile(&engine, "example.rhai", "example", &source, None) {
                Ok(script) => problems.extend(
                    check::check(&engine, &script)
                        .into_iter()
                        .map(|d| format!("{label}: {d}\n{source}")),
                ),
                Err(e) => problems.push(format!("{label}: {e}\n{source}")),
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    }

    #[test]
    fn documented_hooks_are_the_hooks_check_knows() {
        let documented: Vec<&str> = HOOKS.iter().map(|h| h.name).collect();
        let known: Vec<&str> = check::HOOKS.iter().map(|(name, _, _)| *name).collect();
        assert_eq!(documented, known);
        for (name, params, _) in check::HOOKS {
            let hook = HOOKS.iter().find(|h| h.name == *name).unwrap();
            assert_eq!(hook.signature, format!("fn {name}({})", params.join(", ")));
        }
    }

    #[test]
    fn documented_options_are_the_accepted_keys_with_their_defaults() {
        let engine = Engine::new();
        let source = OPTIONS
            .iter()
            .map(|o| format!("{}: {}", o.name, o.default))
            .collect::<Vec<_>>()
            .join(", ");
        let map: rhai::Map = engine.eval(&format!("#{{ {source} }}")).unwrap();
        assert_eq!(
            PipelineOptions::from_map(&map).unwrap(),
            PipelineOptions::default(),
            "a documented default differs from PipelineOptions::default()"
        );
        let unknown: rhai::Map = engine.eval("#{ no_such_option: 1 }").unwrap();
        let message = PipelineOptions::from_map(&unknown).unwrap_err().join("");
        let known = message
            .split("(known: ")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .expect("the unknown-option error lists the known keys");
        let mut accepted: Vec<&str> = known.split(',').map(str::trim).collect();
        let mut documented: Vec<&str> = OPTIONS.iter().map(|o| o.name).collect();
        accepted.sort_unstable();
        documented.sort_unstable();
        assert_eq!(documented, accepted);
    }

    #[test]
    fn documented_summary_fields_are_the_fields_of_summary() {
        let source = include_str!("../runner/summary.rs");
        let body = source
            .split("pub struct Summary {")
            .nth(1)
            .and_then(|rest| rest.split("\n}").next())
            .expect("struct Summary in src/runner/summary.rs");
        let fields: Vec<&str> = body
            .lines()
            .filter_map(|l| l.trim().strip_prefix("pub "))
            .filter_map(|l| l.split(':').next())
            .collect();
        let documented: Vec<&str> = SUMMARY_FIELDS.iter().map(|f| f.name).collect();
        assert_eq!(documented, fields);
    }

    #[test]
    fn documented_error_fields_are_the_fields_scripts_catch() {
        let map = crate::natives::thrown::Thrown::new("x")
            .with("bytes_received", 1_i64)
            .to_map();
        let mut caught: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
        let mut documented: Vec<&str> = ERROR_FIELDS.iter().map(|f| f.name).collect();
        caught.sort_unstable();
        documented.sort_unstable();
        assert_eq!(documented, caught);
    }
}
