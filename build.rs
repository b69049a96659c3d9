//! Links the `spool` binary as a position-dependent executable on Linux
//! with glibc (`-no-pie`). Every spool command is a short process, so what
//! the dynamic loader does before `main` is paid thousands of times a day:
//! as a PIE, the binary carried about 29,000 relative relocations (700 KB
//! of `.rela.dyn`) that the loader applied at every start, about 400,000
//! instructions and 120 page faults, a third of `spool --version` and a
//! seventh of a one-message `consume`. A position-dependent binary needs
//! none. What it gives up is a random load address for the executable's own
//! code (libraries, stack and heap stay randomised); see
//! `bench/RESULTS.md` (session 8).
// A build script talks to cargo on stdout.
#![allow(clippy::print_stdout)]

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
