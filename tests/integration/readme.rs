//! The documentation cannot drift from the tool: every ```sh block of
//! README.md and of each document in `docs/` runs here, in order, each
//! document in a scratch folder with a database of its own, and every link
//! between the documents (to a file or to a heading) must lead somewhere.
//! On PostgreSQL (`SPOOL_TEST_BACKEND=postgres`) the blocks run against the
//! test's schema (`SPOOL_DB` is its URL).
//!
//! Blocks run with `bash -eo pipefail`: a block passes when its last command
//! succeeds and no command it runs fails. Blocks that install or build spool
//! (they mention `cargo `) are left to CI. The scratch folder holds what the
//! examples mention: `export.json` and small stand-ins for the handler
//! scripts (`./charge-card.sh`, `./handle-batch`, `./send-email.sh`).
//! Examples that cannot run here (cron lines, a server elsewhere, commands
//! that run until stopped) are written as ```text blocks.

use std::path::{Path, PathBuf};

use crate::common::*;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

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

/// The examples use jq; without it (CI installs it) the tests say so and pass.
fn jq_missing(test: &str) -> bool {
    let missing = std::process::Command::new("jq")
        .arg("--version")
        .output()
        .is_err();
    if missing {
        eprintln!("SKIPPED {test}: jq is not installed (.ci/run installs it)");
    }
    missing
}

/// Runs the ```sh blocks of the document at `rel` (relative to the
/// repository) in order, in a fresh scratch folder and database, and returns
/// how many ran.
fn run_document(rel: &str) -> usize {
    let text = std::fs::read_to_string(repo().join(rel)).unwrap();
    let env = Env::new();
    fixtures(env.dir.path());
    let bin_dir = Path::new(bin()).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut ran = 0;
    for (line, block) in &sh_blocks(&text) {
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
            "{rel} block at line {line} failed ({}):\n{block}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ran += 1;
    }
    ran
}

/// The Markdown documents of `docs/`, relative to the repository, sorted.
fn docs() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    names.sort();
    names
}

#[test]
fn readme_sh_blocks_run() {
    if jq_missing("readme_sh_blocks_run") {
        return;
    }
    let ran = run_document("README.md");
    assert!(ran >= 1, "the README's quick start should be runnable");
}

#[test]
fn guide_sh_blocks_run() {
    if jq_missing("guide_sh_blocks_run") {
        return;
    }
    let ran = run_document("docs/GUIDE.md");
    assert!(ran >= 10, "the user guide should have runnable examples");
}

/// Every other document of `docs/` (the FAQ, postgres.md, and any added
/// later): their blocks run too, each document on its own.
#[test]
fn other_docs_sh_blocks_run() {
    if jq_missing("other_docs_sh_blocks_run") {
        return;
    }
    let others: Vec<String> = docs()
        .into_iter()
        .filter(|d| d != "docs/GUIDE.md")
        .collect();
    assert!(others.contains(&"docs/FAQ.md".to_owned()), "{others:?}");
    let ran: usize = others.iter().map(|d| run_document(d)).sum();
    assert!(ran >= 1, "the FAQ has a runnable example");
}

/// GitHub's anchor for a heading: lower case, without punctuation (backticks
/// included), spaces as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a document's headings, and the targets of its links
/// (outside fenced code blocks) with the line each is on.
fn anchors_and_links(markdown: &str) -> (Vec<String>, Vec<(usize, String)>) {
    let (mut anchors, mut links) = (Vec::new(), Vec::new());
    let mut fenced = false;
    for (i, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        if line.starts_with('#') {
            anchors.push(anchor(line.trim_start_matches('#')));
        }
        let mut rest = line;
        while let Some(start) = rest.find("](") {
            rest = &rest[start + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            links.push((i + 1, rest[..end].to_owned()));
            rest = &rest[end..];
        }
    }
    (anchors, links)
}

#[test]
fn links_between_documents_lead_somewhere() {
    let mut documents = vec!["README.md".to_owned()];
    documents.extend(docs());
    let mut broken = Vec::new();
    let mut checked = 0;
    for doc in &documents {
        let text = std::fs::read_to_string(repo().join(doc)).unwrap();
        let (_, links) = anchors_and_links(&text);
        for (line, link) in links {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (file, fragment) = link.split_once('#').unwrap_or((&link, ""));
            let target: PathBuf = if file.is_empty() {
                repo().join(doc)
            } else {
                repo().join(doc).parent().unwrap().join(file)
            };
            checked += 1;
            if !target.exists() {
                broken.push(format!("{doc}:{line}: {link}: no such file"));
                continue;
            }
            if fragment.is_empty() {
                continue;
            }
            let target_text = std::fs::read_to_string(&target).unwrap_or_default();
            let (anchors, _) = anchors_and_links(&target_text);
            if !anchors.iter().any(|a| a == fragment) {
                broken.push(format!("{doc}:{line}: {link}: no such heading"));
            }
        }
    }
    assert!(checked >= 20, "only {checked} links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn anchors_follow_github() {
    assert_eq!(anchor(" Workers: `spool work`"), "workers-spool-work");
    assert_eq!(
        anchor(" Several machines: PostgreSQL"),
        "several-machines-postgresql"
    );
    assert_eq!(
        anchor(" `publish` exited 74, but were the messages published?"),
        "publish-exited-74-but-were-the-messages-published"
    );
}
