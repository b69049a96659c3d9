//! Completions, man pages and help: generated from the clap definition,
//! committed, and checked here so they cannot go stale.

use std::path::Path;

use crate::common::*;

const REFRESH: &str = "cargo run -- man --dir man && cargo run -- completions --dir completions";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn cli_definition_is_consistent() {
    spool::Cli::definition().debug_assert();
}

#[test]
fn committed_man_pages_are_up_to_date() {
    let pages = spool::commands::docs::man_pages().unwrap();
    assert!(pages.len() > 5, "one page per command");
    let mut stale = Vec::new();
    for (name, text) in &pages {
        let committed = std::fs::read(repo().join("man").join(name)).unwrap_or_default();
        if &committed != text {
            stale.push(name.clone());
        }
    }
    let committed: Vec<String> = std::fs::read_dir(repo().join("man"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    for name in committed {
        if !pages.iter().any(|(n, _)| *n == name) {
            stale.push(format!("{name} (no longer generated: delete it)"));
        }
    }
    assert!(
        stale.is_empty(),
        "man pages out of date: {stale:?}. Refresh with `{REFRESH}`"
    );
}

#[test]
fn committed_completions_are_up_to_date() {
    for (shell, file) in spool::commands::docs::SHELLS {
        let fresh = spool::commands::docs::completion_script(shell);
        let committed = std::fs::read(repo().join("completions").join(file)).unwrap_or_default();
        assert!(
            committed == fresh,
            "completions/{file} is out of date. Refresh with `{REFRESH}`"
        );
    }
}

#[test]
fn man_pages_have_exit_status_and_examples() {
    let env = Env::new();
    let top = env.run(&["man"]);
    top.success();
    assert!(top.stdout.contains(".SH \"EXIT STATUS\""));
    assert!(top.stdout.contains("\\fB75\\fR"));
    let publish = env.run(&["man", "publish"]);
    assert!(
        publish.stdout.contains(".SH EXAMPLES"),
        "{}",
        publish.stdout
    );
    assert!(publish.stdout.contains("spool publish orders"));
    env.run(&["man", "nonsense"]).code(2).stderr_has("publish");
}

#[test]
fn every_shell_gets_a_script_that_asks_spool() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let run = env.run(&["completions", shell]);
        run.success();
        assert!(
            run.stdout.contains("SPOOL_COMPLETE"),
            "{shell}: {}",
            run.stdout
        );
        assert!(run.stdout.contains("spool"), "{shell}");
    }
    env.run(&["completions", "tcsh"]).code(2);
}

#[test]
fn top_level_help_matches_snapshot() {
    snapbox::cmd::Command::new(bin())
        .env_clear()
        .arg("--help")
        .assert()
        .success()
        .stdout_eq(snapbox::file!["snapshots/help.txt"]);
}

#[test]
fn publish_help_matches_snapshot() {
    snapbox::cmd::Command::new(bin())
        .env_clear()
        .args(["publish", "--help"])
        .assert()
        .success()
        .stdout_eq(snapbox::file!["snapshots/publish-help.txt"]);
}

#[test]
fn bash_completion_offers_queue_names_from_the_database() {
    let env = Env::new();
    for queue in ["orders", "order-events", "payments"] {
        env.publish(queue, "1");
    }
    let script = env.run(&["completions", "bash"]);
    script.success();
    let script_path = env.path("spool.bash");
    std::fs::write(&script_path, &script.stdout).unwrap();
    let bin_dir = Path::new(bin()).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let complete = |words: &str| {
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source '{}'; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); COMP_TYPE=9; \
                 _clap_complete_spool spool \"${{COMP_WORDS[COMP_CWORD]}}\" spool; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                script_path.display()
            ))
            .env("PATH", &path)
            .env("SPOOL_DB", &env.db)
            .output()
            .unwrap();
        let mut words: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        words.sort();
        words
    };
    assert_eq!(complete("spool consume ord"), ["order-events", "orders"]);
    assert_eq!(complete("spool publish pay"), ["payments"]);
    assert!(complete("spool pub").contains(&"publish".to_owned()));
}

#[test]
fn every_command_and_flag_is_explained_with_examples() {
    fn walk(cmd: &clap::Command, path: &str, problems: &mut Vec<String>) {
        let name = format!("{path} {}", cmd.get_name()).trim().to_owned();
        if cmd.get_about().is_none() {
            problems.push(format!("`{name}` has no one-line summary"));
        }
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            if arg.get_help().is_none() && arg.get_id() != "help" && arg.get_id() != "version" {
                problems.push(format!("`{name}` argument `{}` has no help", arg.get_id()));
            }
        }
        if !cmd.has_subcommands() {
            let examples = cmd
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            let count = examples
                .lines()
                .filter(|l| l.trim_start().starts_with("spool "))
                .count();
            if count < 2 {
                problems.push(format!(
                    "`{name}` has {count} example(s), wants two or more"
                ));
            }
        }
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            walk(sub, &name, problems);
        }
    }
    let mut problems = Vec::new();
    // Built, so that every subcommand has its arguments (see `Cli::definition`).
    let mut cli = spool::Cli::definition();
    cli.build();
    walk(&cli, "", &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");
}
