//! How the commands cxpipe prints for the user to type next start: `cargo run --release --`
//! or `cargo run --` when this binary is a build in a cargo target folder (so the line can
//! be pasted as it is in the source tree), else `cxpipe` (installed).

use std::path::Path;
use std::sync::OnceLock;

/// The start of a command line that runs this same build.
pub fn program() -> &'static str {
    static PROGRAM: OnceLock<&'static str> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(of_build_dir))
            .unwrap_or("cxpipe")
    })
}

/// `dir` holds the binary: a cargo profile folder (`…/release`, `…/debug`, beside cargo's
/// `.fingerprint`) names its `cargo run`; anything else is an installed `cxpipe`.
fn of_build_dir(dir: &Path) -> &'static str {
    if !dir.join(".fingerprint").is_dir() {
        return "cxpipe";
    }
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("release") => "cargo run --release --",
        Some("debug") => "cargo run --",
        _ => "cxpipe",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cargo_profile_folder_names_its_cargo_run_and_anything_else_is_cxpipe() {
        let root = tempfile::tempdir().unwrap();
        for name in ["release", "debug", "bin"] {
            let dir = root.path().join(name);
            std::fs::create_dir_all(dir.join(".fingerprint")).unwrap();
            let expected = match name {
                "release" => "cargo run --release --",
                "debug" => "cargo run --",
                _ => "cxpipe",
            };
            assert_eq!(of_build_dir(&dir), expected, "{name}");
        }
        let installed = root.path().join("installed/release");
        std::fs::create_dir_all(&installed).unwrap();
        assert_eq!(of_build_dir(&installed), "cxpipe");
    }
}
