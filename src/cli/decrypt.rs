//! `cxpipe decrypt`: restores an object written with `.encrypt(key)` (or a seed-004 JSON
//! envelope) from a local file or a store, to a file (written atomically) or stdout.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::flow::codec::Codec;
use crate::flow::run::{self, Sink};
use crate::flow::{Flow, Source, Stage, envelope};
use crate::keys::KeyRing;
use crate::secret::{Secret, SecretRef};

#[derive(Debug, clap::Args)]
pub struct DecryptArgs {
    /// Encrypted file, or object key when `--store` is given.
    pub input: String,
    /// Where to write the plaintext: it appears (mode 0600) only once every segment has been
    /// authenticated. Default stdout, which receives plaintext segment by segment as each
    /// is authenticated; a later failure (truncation, tampering) exits non-zero, so use
    /// `-o` when a consumer must never see a partial result.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Configuration file with `[keys.NAME]` tables (and `[storage.NAME]` for `--store`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Key name from the configuration (default: the key whose id the header names).
    #[arg(long, conflicts_with_all = ["key_env", "key_file"])]
    pub key: Option<String>,
    /// Environment variable holding a raw 256-bit key (hex or base64).
    #[arg(long, conflicts_with = "key_file")]
    pub key_env: Option<String>,
    /// File holding a raw 256-bit key (raw, hex or base64).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Environment variable holding the passphrase of a seed-004 envelope.
    #[arg(long)]
    pub passphrase_env: Option<String>,
    /// Read INPUT from this store (a URI, or a `[storage.NAME]` of the configuration).
    #[arg(long)]
    pub store: Option<String>,
    /// Decompress after decrypting (`gzip` or `zstd`).
    #[arg(long, value_parser = ["gzip", "zstd"])]
    pub decompress: Option<String>,
}

pub async fn run(args: DecryptArgs) -> anyhow::Result<ExitCode> {
    let cwd = PathBuf::from(".");
    let mut keys = match &args.config {
        Some(path) => crate::runtime::tools::load_keys(path)?,
        None => KeyRing::empty(),
    };
    let cli_key = if let Some(var) = &args.key_env {
        let v = SecretRef::Env(var.clone()).resolve(&cwd)?;
        Some(crate::keys::parse_raw(
            "--key-env",
            &format!("env:{var}"),
            v.expose().as_bytes(),
        )?)
    } else if let Some(path) = &args.key_file {
        let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Some(crate::keys::parse_raw(
            "--key-file",
            &path.display().to_string(),
            &raw,
        )?)
    } else {
        None
    };
    // A name no `[keys.NAME]` table can have, so a configured key is never shadowed.
    const CLI_KEY: &str = "(command line)";
    if let Some(k) = cli_key {
        keys.insert_raw(CLI_KEY, *k.bytes());
    }
    let key_name = match (&args.key, args.key_env.is_some() || args.key_file.is_some()) {
        (Some(k), _) => Some(k.clone()),
        (None, true) => Some(CLI_KEY.to_string()),
        (None, false) => None,
    };
    let source = match &args.store {
        Some(s) => Source::Read {
            store: crate::runtime::tools::open_store(s, args.config.as_deref())?,
            key: args.input.clone(),
        },
        None => Source::File(PathBuf::from(&args.input)),
    };
    let head = read_head(&source).await?;
    let passphrase = match &args.passphrase_env {
        Some(var) => Some(SecretRef::Env(var.clone()).resolve(&cwd)?),
        None => None,
    };
    let decompress = args.decompress.as_deref().map(|d| {
        if d == "gzip" {
            Codec::Gzip
        } else {
            Codec::Zstd
        }
    });
    let output = args.output.clone();
    if envelope::looks_like_envelope(&head) {
        let plain = open_envelope(&source, &keys, key_name.as_deref(), passphrase).await?;
        let plain = match decompress {
            Some(c) => decompress_all(c, &plain)?,
            None => plain,
        };
        write_output(output.as_deref(), &plain)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut stages = vec![Stage::Decrypt(key_name)];
    if let Some(c) = decompress {
        stages.push(Stage::Decompress(c));
    }
    let flow = Flow {
        stages,
        ..Flow::new(source)
    };
    tokio::task::spawn_blocking(move || decrypt_stream(&flow, &keys, output.as_deref())).await??;
    Ok(ExitCode::SUCCESS)
}

fn decrypt_stream(flow: &Flow, keys: &KeyRing, output: Option<&Path>) -> anyhow::Result<()> {
    match output {
        None => {
            let sink = Sink::Local(Box::new(std::io::stdout()));
            run::run(flow, sink, keys, None, Default::default())?;
        }
        Some(path) => {
            let partial = partial_file(path)?;
            let file = partial
                .as_file()
                .try_clone()
                .with_context(|| format!("opening {}", partial.path().display()))?;
            let sink = Sink::Local(Box::new(std::io::BufWriter::with_capacity(1 << 20, file)));
            // On error the temporary file is removed when `partial` drops.
            run::run(flow, sink, keys, None, Default::default())?;
            publish(partial, path)?;
        }
    }
    Ok(())
}

/// A new, private (0600) temporary file beside `path`, created exclusively (an existing
/// file or symlink there is never followed or truncated); removed unless published.
fn partial_file(path: &Path) -> anyhow::Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".partial")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))
}

/// Syncs the finished temporary file to disk and renames it to `path`.
fn publish(partial: tempfile::NamedTempFile, path: &Path) -> anyhow::Result<()> {
    partial
        .as_file()
        .sync_all()
        .with_context(|| format!("writing {}", partial.path().display()))?;
    partial
        .persist(path)
        .with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

async fn read_head(source: &Source) -> anyhow::Result<Vec<u8>> {
    Ok(match source {
        Source::File(p) => {
            let f = std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
            // Enough to see past leading blanks to an envelope's `{` or a header's magic.
            let mut head = Vec::new();
            f.take(64 * 1024).read_to_end(&mut head)?;
            head
        }
        Source::Read { store, key } => {
            use futures::StreamExt;
            let mut s = Box::pin(store.read_stream(key).await?);
            match s.next().await {
                Some(b) => b?.to_vec(),
                None => Vec::new(),
            }
        }
        _ => Vec::new(),
    })
}

async fn open_envelope(
    source: &Source,
    keys: &KeyRing,
    key_name: Option<&str>,
    passphrase: Option<Secret>,
) -> anyhow::Result<Vec<u8>> {
    let json = match source {
        Source::File(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        Source::Read { store, key } => store
            .read_small(key, 4 * 1024 * 1024 * 1024)
            .await?
            .with_context(|| format!("{key} not found"))?
            .to_vec(),
        _ => bail!("envelopes are read from files or stores"),
    };
    let mut candidates: Vec<Secret> = passphrase.into_iter().collect();
    for (name, kek) in keys.iter() {
        if key_name.is_none_or(|k| k == name)
            && let Some(p) = kek.passphrase()
        {
            candidates.push(p.clone());
        }
    }
    if candidates.is_empty() {
        bail!(
            "this is a seed-004 JSON envelope: give its passphrase with --passphrase-env VAR or a [keys.NAME] passphrase_env key"
        );
    }
    let mut last = None;
    for p in &candidates {
        match envelope::open(&json, p) {
            Ok(plain) => return Ok(plain),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("at least one candidate").into())
}

fn decompress_all(codec: Codec, data: &[u8]) -> anyhow::Result<Vec<u8>> {
    use crate::flow::codec::CodecStage;
    use crate::flow::transform::Transform;
    let mut t = CodecStage::decompress(codec)?;
    let mut out = Vec::new();
    t.update(data, &mut out)?;
    t.finish(&mut out)?;
    Ok(out)
}

fn write_output(path: Option<&Path>, data: &[u8]) -> anyhow::Result<()> {
    match path {
        None => std::io::stdout().write_all(data)?,
        Some(p) => {
            let mut partial = partial_file(p)?;
            partial
                .write_all(data)
                .with_context(|| format!("writing {}", partial.path().display()))?;
            publish(partial, p)?;
        }
    }
    Ok(())
}
