//! File systems made by tests (tmpfs with a size limit, bindfs for FUSE), and
//! a guard that unmounts them even when the test fails.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted file system, unmounted on drop (also while a failed test unwinds).
pub struct Mount {
    pub path: PathBuf,
}

impl Mount {
    /// Mounts a tmpfs of `size` (like `2m`) at `path`, or says on stderr why
    /// it cannot (not root, no mount permission in this container) and
    /// returns `None` so the test can skip visibly.
    pub fn tmpfs(path: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(path).ok()?;
        let opts = format!("size={size},mode=0700");
        Mount::run(
            path,
            Command::new("mount").args(["-t", "tmpfs", "-o", &opts, "tmpfs"]),
        )
    }

    /// Mounts `source` again at `path` through bindfs (a FUSE file system),
    /// or says why it cannot and returns `None`.
    pub fn bindfs(source: &Path, path: &Path) -> Option<Mount> {
        std::fs::create_dir_all(path).ok()?;
        Mount::run(path, Command::new("bindfs").arg(source))
    }

    /// A read-only bind mount of `source` at `path` (root ignores file
    /// permissions, but not a read-only mount).
    pub fn read_only_bind(source: &Path, path: &Path) -> Option<Mount> {
        std::fs::create_dir_all(path).ok()?;
        let mount = Mount::run(path, Command::new("mount").arg("--bind").arg(source))?;
        let remount = Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(path)
            .output();
        match remount {
            Ok(out) if out.status.success() => Some(mount),
            other => {
                eprintln!(
                    "SKIPPED: cannot remount {} read-only: {other:?}",
                    path.display()
                );
                None
            }
        }
    }

    fn run(path: &Path, cmd: &mut Command) -> Option<Mount> {
        match cmd.arg(path).output() {
            Ok(out) if out.status.success() => Some(Mount {
                path: path.to_owned(),
            }),
            Ok(out) => {
                eprintln!(
                    "SKIPPED: cannot mount at {} ({:?}): {}",
                    path.display(),
                    cmd,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run {cmd:?}: {e}");
                None
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // Lazy unmount: it succeeds even if a killed child still has a file open.
        let ok = Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("warning: could not unmount {}", self.path.display());
        }
    }
}
