//! Known answers: objects and an envelope made by `tests/fixtures/gen_kat.py` with Python's
//! `cryptography`, straight from docs/FORMAT.md, decrypt with `cxpipe decrypt` to the exact
//! plaintext. A change to a constant of the format (HKDF info, key-id message, nonce layout,
//! last-segment flag, header offsets, envelope iterations) breaks these. Also: the output
//! file appears complete and private, or not at all.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::cxpipe_bin;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The generator's plaintext: byte i is i mod 251.
fn plaintext(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn decrypt(args: &[&str]) -> Output {
    Command::new(cxpipe_bin())
        .arg("decrypt")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn objects_made_from_the_spec_by_another_implementation_decrypt_exactly() {
    let key = fixture("kat.key");
    for (name, size) in [("kat-150000.enc", 150_000), ("kat-65536.enc", 65_536)] {
        let input = fixture(name);
        let out = decrypt(&["--key-file", key.to_str().unwrap(), input.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, plaintext(size), "{name}");
    }
}

#[test]
fn an_envelope_made_by_another_implementation_opens() {
    // Also after a long run of leading blanks (pretty-printers, editors).
    let dir = tempfile::tempdir().unwrap();
    let padded = dir.path().join("padded.json");
    let mut text = vec![b' '; 300];
    text.push(b'\n');
    text.extend(std::fs::read(fixture("kat-envelope.json")).unwrap());
    std::fs::write(&padded, text).unwrap();
    for input in [fixture("kat-envelope.json"), padded] {
        let out = Command::new(cxpipe_bin())
            .args(["decrypt", "--passphrase-env", "CXPIPE_KAT_PASS"])
            .arg(&input)
            .env("CXPIPE_KAT_PASS", "kat passphrase")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {stderr}", input.display());
        assert_eq!(out.stdout, b"{\"kat\":true}\n");
    }
}

#[test]
fn the_output_file_is_private_and_appears_only_when_complete() {
    let dir = tempfile::tempdir().unwrap();
    let key = fixture("kat.key");
    let out_path = dir.path().join("rec.wav");
    // A symlink where a naive writer would put its partial file is left alone.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"untouched").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&victim, dir.path().join("rec.wav.partial")).unwrap();
    let ok = decrypt(&[
        "--key-file",
        key.to_str().unwrap(),
        fixture("kat-150000.enc").to_str().unwrap(),
        "-o",
        out_path.to_str().unwrap(),
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(std::fs::read(&out_path).unwrap(), plaintext(150_000));
    assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "plaintext is private: {mode:o}");
    }

    // Truncated by one segment: nothing appears, nothing is left behind.
    let cut = dir.path().join("cut.enc");
    let whole = std::fs::read(fixture("kat-150000.enc")).unwrap();
    std::fs::write(&cut, &whole[..64 + 2 * (65_536 + 16)]).unwrap();
    let bad_out = dir.path().join("cut.wav");
    let bad = decrypt(&[
        "--key-file",
        key.to_str().unwrap(),
        cut.to_str().unwrap(),
        "-o",
        bad_out.to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    assert!(!bad_out.exists());
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with(".cut.wav.")),
        "temporary output left behind: {names:?}"
    );
}

#[test]
fn a_configured_key_cannot_be_combined_with_a_command_line_key() {
    let out = decrypt(&[
        "--key",
        "archive",
        "--key-file",
        fixture("kat.key").to_str().unwrap(),
        fixture("kat-150000.enc").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}
