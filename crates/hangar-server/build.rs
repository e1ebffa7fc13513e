//! Embeds the built web assets (`web/dist/`, made by `cargo xtask web`). When they have not
//! been built, a stand-in script that says so is embedded instead, so `cargo build` works on
//! its own.

use std::path::Path;

fn main() {
    let out = std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into());
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/dist/viewer.js");
    println!("cargo:rerun-if-changed={}", dist.display());
    let target = Path::new(&out).join("viewer.js");
    let copied = std::fs::copy(&dist, &target).is_ok();
    if !copied {
        let stand_in = "document.getElementById('status').textContent = \
                        'The viewer was not built into this binary: run cargo xtask web, then rebuild.';";
        if let Err(e) = std::fs::write(&target, stand_in) {
            panic!("writing {}: {e}", target.display());
        }
    }
}
