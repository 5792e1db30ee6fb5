//! Link-time trimming of the release agent for the musl target.
//!
//! The agent is built with `panic = "abort"`, so nothing ever unwinds through it; but the
//! prebuilt standard library for musl carries unwind tables (`.eh_frame`, about 240 KiB, a
//! tenth of the binary) that `panic = "abort"` cannot remove without a nightly `-Z build-std`.
//! A linker script drops them from the `esxi-tweet` binary. crtbegin/crtend keep theirs
//! because their start-up code registers the (now nearly empty) table. What is lost is only
//! the frame list of a `RUST_BACKTRACE` report after a panic; the panic message and the abort
//! are unchanged.

use std::{env, fs, path::PathBuf};

const DISCARD_UNWIND_TABLES: &str = "\
SECTIONS { /DISCARD/ : { *(EXCLUDE_FILE(*crtbegin*.o *crtend*.o) .eh_frame) *(.gcc_except_table .gcc_except_table.*) } }
INSERT AFTER .text;
";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = env::var("TARGET").unwrap_or_default();
    let profile = env::var("PROFILE").unwrap_or_default();
    if !(target.ends_with("-linux-musl") && profile == "release") {
        return;
    }
    let script = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("discard-unwind-tables.ld");
    fs::write(&script, DISCARD_UNWIND_TABLES).expect("write the linker script to OUT_DIR");
    println!("cargo:rustc-link-arg-bin=esxi-tweet=-Wl,--no-eh-frame-hdr");
    println!(
        "cargo:rustc-link-arg-bin=esxi-tweet=-Wl,-T,{}",
        script.display()
    );
}
