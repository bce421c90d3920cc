//! `verify`: re-reads stored objects, undoes their transforms (decrypt, decompress) when the
//! keys are loaded, recomputes hashes and compares them with the manifests, and checks
//! each manifest's MAC when keys are loaded. One problem per line; runs on a blocking
//! thread like every flow.

use tokio::runtime::Handle;

use super::codec::Codec;
use super::manifest::{Loaded, Manifest};
use super::manifest_mac::Authenticity;
use super::run::{self, Sink};
use super::spec::{Flow, Source, Stage};
use crate::keys::KeyRing;
use crate::storage::{StorageError, Store};

/// What `verify` found.
#[derive(Debug, Default)]
pub struct Report {
    /// Objects whose stored bytes matched (and plaintext, where checked).
    pub ok: Vec<String>,
    /// `KEY: what is wrong`, one per problem.
    pub problems: Vec<String>,
    /// `KEY: what could not be checked` (e.g. a key that is not loaded).
    pub notes: Vec<String>,
}

/// How strict `verify` is.
#[derive(Clone, Copy, Debug, Default)]
pub struct VerifyOptions {
    /// With keys loaded, a manifest without a MAC (written before manifests were
    /// authenticated, or without a key) is a note rather than a problem.
    pub accept_unauthenticated: bool,
}

/// Verifies every object under `prefix`.
pub fn verify(store: &Store, prefix: &str, keys: &KeyRing) -> Result<Report, StorageError> {
    verify_with(store, prefix, keys, VerifyOptions::default())
}

/// Verifies every object under `prefix` with `options`.
pub fn verify_with(
    store: &Store,
    prefix: &str,
    keys: &KeyRing,
    options: VerifyOptions,
) -> Result<Report, StorageError> {
    let handle = Handle::current();
    let objects = handle.block_on(store.list(prefix))?;
    let manifested = handle.block_on(store.manifested(prefix))?;
    let mut report = Report::default();
    for key in manifested
        .iter()
        .filter(|k| objects.binary_search(k).is_err())
    {
        report
            .problems
            .push(format!("{key}: manifest without object"));
    }
    for key in &objects {
        match handle.block_on(Manifest::load_checked(store, key, keys)) {
            Ok(Some(loaded)) => {
                if authentic(key, &loaded, keys, options, &mut report) {
                    check_object(store, key, &loaded.manifest, keys, &mut report);
                }
            }
            Ok(None) => report.problems.push(format!("{key}: no manifest")),
            Err(e) => report
                .problems
                .push(format!("{key}: unreadable manifest: {e}")),
        }
    }
    Ok(report)
}

/// Records what the manifest's MAC says; false when the manifest cannot be trusted at all
/// (its hashes would compare a forged object with forged values).
fn authentic(
    key: &str,
    loaded: &Loaded,
    keys: &KeyRing,
    options: VerifyOptions,
    report: &mut Report,
) -> bool {
    let no_keys = keys.names().is_empty();
    match &loaded.authenticity {
        Authenticity::Valid => true,
        Authenticity::Missing if no_keys => true,
        Authenticity::Missing if options.accept_unauthenticated => {
            report.notes.push(format!(
                "{key}: unauthenticated manifest (no MAC), accepted"
            ));
            true
        }
        Authenticity::Missing => {
            report.problems.push(format!(
                "{key}: unauthenticated manifest: it has no MAC, though keys are loaded (written without a key or by an older cxpipe; --accept-unauthenticated lets it pass)"
            ));
            false
        }
        Authenticity::UnknownKey(id) if no_keys => {
            report.notes.push(format!(
                "{key}: manifest MAC not checked: key id {id} is not loaded (give --config with its [keys.NAME])"
            ));
            true
        }
        Authenticity::UnknownKey(id) => {
            report.problems.push(format!(
                "{key}: manifest MAC is by key id {id}, which is not loaded: cannot authenticate it"
            ));
            false
        }
        Authenticity::Forged => {
            report.problems.push(format!(
                "{key}: forged manifest: its MAC does not match its contents (edited after it was written)"
            ));
            false
        }
        Authenticity::Malformed => {
            report
                .problems
                .push(format!("{key}: manifest has a malformed MAC"));
            false
        }
    }
}

/// The stages undoing `transforms`, or why they cannot be undone.
fn undo(m: &Manifest, keys: &KeyRing) -> Result<Vec<Stage>, String> {
    let mut stages = Vec::new();
    for t in m.transforms.iter().rev() {
        let (name, arg) = t
            .split_once('(')
            .map(|(n, a)| (n, a.trim_end_matches(')')))
            .unwrap_or((t.as_str(), ""));
        stages.push(match name {
            "gzip" => Stage::Decompress(Codec::Gzip),
            "zstd" => Stage::Decompress(Codec::Zstd),
            "encrypt" if keys.get(arg).is_ok() => Stage::Decrypt(Some(arg.to_string())),
            "encrypt" => match m
                .encryption
                .as_ref()
                .and_then(|e| hex::decode(&e.key_id).ok())
                .and_then(|id| <[u8; 8]>::try_from(id.as_slice()).ok())
            {
                Some(id) if keys.by_id(id).is_some() => Stage::Decrypt(None),
                _ => return Err(format!("key {arg} is not loaded")),
            },
            other => return Err(format!("cannot undo stage {other}")),
        });
    }
    Ok(stages)
}

fn check_object(store: &Store, key: &str, m: &Manifest, keys: &KeyRing, report: &mut Report) {
    let mut stages = vec![Stage::Sha256];
    let plain_stages = match undo(m, keys) {
        Ok(s) => Some(s),
        Err(why) => {
            report
                .notes
                .push(format!("{key}: plaintext not checked: {why}"));
            None
        }
    };
    let check_plain = plain_stages.is_some() && !m.transforms.is_empty();
    if let Some(s) = plain_stages.filter(|_| check_plain) {
        stages.extend(s);
        if m.plaintext.md5.is_some() {
            stages.push(Stage::Md5);
        }
        stages.push(Stage::Sha256);
    } else if m.plaintext.md5.is_some() && m.transforms.is_empty() {
        stages.push(Stage::Md5);
    }
    let flow = Flow {
        stages,
        ..Flow::new(Source::Read {
            store: store.clone(),
            key: key.to_string(),
        })
    };
    let outcome = match run::run(&flow, Sink::Discard, keys, None, Default::default()) {
        Ok(o) => o,
        Err(e) => {
            report.problems.push(format!("{key}: {e}"));
            return;
        }
    };
    let mut problems = Vec::new();
    // The first tap saw the stored bytes; the chain's last tap saw the plaintext.
    let stored = &outcome.chain.plaintext;
    if stored.size != m.stored.size {
        problems.push(format!(
            "stored size {} != manifest {}",
            stored.size, m.stored.size
        ));
    }
    if stored.sha256.as_deref() != Some(m.stored.sha256.as_str()) {
        problems.push("stored sha256 differs from manifest".to_string());
    }
    let plain = if check_plain {
        Some(&outcome.chain.stored)
    } else if m.transforms.is_empty() {
        Some(stored)
    } else {
        None
    };
    if let Some(p) = plain {
        if p.size != m.plaintext.size {
            problems.push(format!(
                "plaintext size {} != manifest {}",
                p.size, m.plaintext.size
            ));
        }
        if p.sha256.as_deref() != Some(m.plaintext.sha256.as_str()) {
            problems.push("plaintext sha256 differs from manifest".to_string());
        }
        if m.plaintext.md5.is_some() && outcome.chain.md5 != m.plaintext.md5 {
            problems.push("plaintext md5 differs from manifest".to_string());
        }
    }
    if problems.is_empty() {
        report.ok.push(key.to_string());
    } else {
        report
            .problems
            .push(format!("{key}: {}", problems.join("; ")));
    }
}
