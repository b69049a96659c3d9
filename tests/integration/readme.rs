//! Every ```sh block of README.md runs here, in order, in one scratch folder
//! with its own database, so the documentation cannot drift from the tool.
//! On PostgreSQL (`SPOOL_TEST_BACKEND=postgres`) the blocks run against the
//! test's schema (`SPOOL_DB` is its URL).
//!
//! Blocks run with `bash -eo pipefail`: a block passes when its last command
//! succeeds and no command it runs fails. The scratch folder holds what the
//! examples mention: `export.json` and small stand-ins for the handler
//! scripts (`./charge-card.sh`, `./handle-batch`, `./send-email.sh`).

use std::path::Path;

use crate::common::*;

/// The fenced code blocks of `markdown` whose info string is exactly `sh`,
/// with the line each starts on.
fn sh_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some((i + 1, String::new())),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some((_, text)), _) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

fn fixtures(dir: &Path) {
    let write = |name: &str, text: &str, exec: bool| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        if exec {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    };
    write(
        "export.json",
        r#"{"orders":[{"id":1,"total":9.5},{"id":2,"total":12},{"id":3,"total":3.25}]}"#,
        false,
    );
    write("charge-card.sh", "#!/bin/sh\ncat >/dev/null\n", true);
    write("send-email.sh", "#!/bin/sh\ncat >/dev/null\n", true);
    write("handle-batch", "#!/bin/sh\ncat\n", true);
}

#[test]
fn readme_sh_blocks_run() {
    if std::process::Command::new("jq")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED readme_sh_blocks_run: jq is not installed (.ci/run installs it)");
        return;
    }
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let blocks = sh_blocks(&readme);
    assert!(blocks.len() >= 5, "README should have runnable examples");
    let env = Env::new();
    fixtures(env.dir.path());
    let bin_dir = Path::new(bin()).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (line, block) in &blocks {
        if block.contains("cargo ") {
            continue; // the set-up commands build spool itself; CI runs those.
        }
        let out = std::process::Command::new("timeout")
            .args(["120", "bash", "-eo", "pipefail", "-c", block])
            .current_dir(env.dir.path())
            .env_clear()
            .env("PATH", &path)
            .env("HOME", env.dir.path())
            .env("SPOOL_DB", &env.db)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "README.md block at line {line} failed ({}):\n{block}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
