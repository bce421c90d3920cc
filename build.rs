//! Embeds `stdlib/**/*.rhai` and `scripts/*.rhai` into the binary, so `cxpipe demo` and
//! imports of the standard library work from any folder.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rhai") {
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .with_extension("");
            let name = rel.to_string_lossy().replace('\\', "/");
            out.push((name, path));
        }
    }
}

fn table(name: &str, root: &Path) -> String {
    let mut files = Vec::new();
    collect(root, root, &mut files);
    let mut s = format!("pub static {name}: &[(&str, &str)] = &[\n");
    for (module, path) in files {
        let abs = path.canonicalize().expect("canonical path");
        writeln!(
            s,
            "    ({module:?}, include_str!({:?})),",
            abs.to_string_lossy()
        )
        .unwrap();
    }
    s.push_str("];\n");
    s
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    println!("cargo:rerun-if-changed=stdlib");
    println!("cargo:rerun-if-changed=scripts");
    let mut code = table("STDLIB", &manifest.join("stdlib"));
    code.push_str(&table("SCRIPTS", &manifest.join("scripts")));
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("embedded.rs");
    std::fs::write(out, code).unwrap();
}
