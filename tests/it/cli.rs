//! The command line itself: help, version, unknown commands.

use crate::harness::cxpipe_bin;

#[test]
fn version_prints_the_crate_version() {
    let out = std::process::Command::new(cxpipe_bin())
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}
