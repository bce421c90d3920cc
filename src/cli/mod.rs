//! The command line: parses arguments, sets up logging and the runtime, and dispatches to
//! one file per subcommand. The only place that maps errors to exit codes.

use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

mod audit;
mod bench;
mod check;
mod completions;
mod config;
mod decrypt;
mod demo;
mod demo_workflows;
mod docs;
mod invocation;
mod items;
mod ledger_args;
mod new;
mod node;
pub mod run;
mod schedule;
mod serve;
mod sim;
mod sim_run;
mod verify;

/// cxpipe: move CXone recordings, transcripts and metadata into your own storage.
#[derive(Debug, Parser)]
#[command(name = "cxpipe", version, about)]
pub struct Cli {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `cxpipe=debug`.
    #[arg(long, global = true, env = "CXPIPE_LOG", default_value = "warn")]
    pub log: String,
    /// Log line format on stderr: `text` for people, `json` (one object a line, with the
    /// run's and item's span fields: tenant, pipeline, run_id, item_key) for log shippers.
    #[arg(
        long,
        global = true,
        env = "CXPIPE_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Download recordings from an in-process simulator into ./cxpipe-demo/ (start here).
    Demo(demo::DemoArgs),
    /// Run a pipeline script once.
    Run(run::RunArgs),
    /// Compile scripts and check their hooks and calls; report every problem.
    Check(check::CheckArgs),
    /// Check `cxpipe.toml`: tenants, stores, keys, pipelines and their scripts.
    Config(config::ConfigArgs),
    /// Write a starting pipeline script and an example configuration (never overwrites).
    New(new::NewArgs),
    /// Print a shell completion script (bash, zsh, fish).
    Completions(completions::CompletionsArgs),
    /// Look at and re-queue items in the ledger.
    Items(items::ItemsArgs),
    /// Export the hash-chained audit log, or verify that no entry was edited, removed or reordered.
    Audit(audit::AuditArgs),
    /// Measure cxpipe itself (see docs/PERFORMANCE.md).
    Bench(bench::BenchArgs),
    /// List the `cxpipe serve` nodes sharing a ledger, or drain one (docs/SCALE.md).
    Node(node::NodeArgs),
    /// Serve every pipeline of a config: schedules, webhooks, hot reload, status and metrics.
    Serve(serve::ServeArgs),
    /// List scheduled pipelines and their next fire times.
    Schedule(schedule::ScheduleArgs),
    /// Run the CXone simulator on loopback.
    Sim(sim::SimArgs),
    /// Decrypt an object written with `.encrypt(key)` (or a seed-004 JSON envelope).
    Decrypt(decrypt::DecryptArgs),
    /// Re-read stored objects, recompute hashes and compare them with their manifests.
    Verify(verify::VerifyArgs),
    /// Write the scripting reference (docs/SCRIPTING.md), or editor definition files.
    Docs(docs::DocsArgs),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    restore_sigpipe();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    init_tracing(
        &log_filter(&cli, matches.value_source("log")),
        cli.log_format,
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(dispatch(cli.command));
    // A worker or `discover` left behind by an interrupted run (stuck in a native call)
    // must not keep the process alive: its item was released, and writes are atomic.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!(
                "error: {}",
                crate::terminal::escape_lines(&format!("{err:#}"), "")
            );
            ExitCode::from(2)
        }
    }
}

/// How long blocking tasks still running at exit are waited for.
const RUNTIME_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(2);

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Demo(args) => demo::run(args).await,
        Command::Run(args) => run::run(args).await,
        Command::Check(args) => check::run(args).await,
        Command::Config(args) => config::run(args).await,
        Command::New(args) => new::run(args).await,
        Command::Completions(args) => completions::run(args),
        Command::Items(args) => items::run(args).await,
        Command::Audit(args) => audit::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Node(args) => node::run(args).await,
        Command::Sim(args) => sim::run(args).await,
        Command::Serve(args) => serve::run(args).await,
        Command::Schedule(args) => schedule::run(args).await,
        Command::Decrypt(args) => decrypt::run(args).await,
        Command::Verify(args) => verify::run(args).await,
        Command::Docs(args) => docs::run(args).await,
    }
}

/// The log filter: `--log` (or `CXPIPE_LOG`) as given. By default, commands that print a
/// run's summary (`run`, `demo`) leave out of their text log the errors that summary
/// reports ([`crate::runner::summary::REPORTED_TARGET`]), so each failure is said once.
fn log_filter(cli: &Cli, source: Option<ValueSource>) -> String {
    let prints_summary = matches!(cli.command, Command::Run(_) | Command::Demo(_));
    let default = source == Some(ValueSource::DefaultValue);
    if prints_summary && default && cli.log_format == LogFormat::Text {
        format!(
            "{},{}=off",
            cli.log,
            crate::runner::summary::REPORTED_TARGET
        )
    } else {
        cli.log.clone()
    }
}

/// Lets `cxpipe items ls | head` end quietly, as command-line tools do, instead of
/// panicking on the closed pipe (Rust ignores SIGPIPE by default).
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any thread exists; setting the default
    // disposition of SIGPIPE has no other effect on this process. No safe API exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Logs to stderr through the filter, as text or JSON lines, with floods of identical
/// lines folded ([`crate::log_limit`]). JSON lines carry the fields of the spans they were
/// logged in (`span` and `spans`): the run's tenant, pipeline and run_id, the item's key.
fn init_tracing(filter: &str, format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let text = (format == LogFormat::Text).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(
                std::env::var_os("NO_COLOR").is_none()
                    && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            )
    });
    let json = (format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stderr)
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(crate::log_limit::RateLimit::new(text))
        .with(crate::log_limit::RateLimit::new(json))
        .try_init();
}
