//! Refusing network file systems, where SQLite's WAL mode is unsafe.
//!
//! WAL mode keeps its index in a shared-memory file (`-shm`) that every process
//! maps, and relies on POSIX locks being honoured at once by every client. On
//! NFS, SMB/CIFS and most FUSE file systems (sshfs, s3fs, rclone, …) neither
//! holds across machines, and often not even on one: two writers can both
//! believe they hold the lock, and the database is silently corrupted. So a
//! command that writes first asks the kernel (`statfs`) what kind of file
//! system holds the database, and refuses the known network kinds unless
//! `SPOOL_ALLOW_NETWORK_FS=1` says the user knows better (a FUSE file system
//! that is local and locks correctly, say).

use std::path::Path;

/// The environment variable that lets spool open a database on a network
/// file system anyway.
pub const OVERRIDE_VAR: &str = "SPOOL_ALLOW_NETWORK_FS";

/// The network (or otherwise shared) file systems spool refuses, by the magic
/// number `statfs` reports in `f_type` (see `linux/magic.h` and statfs(2)).
const NETWORK_KINDS: &[(u32, &str)] = &[
    (0x0000_6969, "NFS"),
    (0x0000_517B, "SMB"),
    (0xFF53_4D42, "CIFS"),
    (0xFE53_4D42, "SMB2"),
    (0x6573_5546, "FUSE"),
    (0x0102_1997, "9P"),
    (0x00C3_6400, "Ceph"),
    (0x7375_7245, "Coda"),
    (0x5346_414F, "AFS"),
    (0x6B41_4653, "AFS"),
    (0x0000_564C, "NCP"),
    (0x0BD0_0BD0, "Lustre"),
    (0x0116_1970, "GFS2"),
    (0x7461_636F, "OCFS2"),
    (0x4750_4653, "GPFS"),
];

/// The name of the network file system with this `statfs` magic number, or
/// `None` for a local one (ext4, xfs, btrfs, tmpfs, overlayfs, …).
pub fn network_kind(magic: u32) -> Option<&'static str> {
    NETWORK_KINDS
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, name)| *name)
}

/// The `statfs` magic number of the file system holding `path` (which must
/// exist), or `None` when the kernel cannot tell.
pub fn magic_of(path: &Path) -> Option<u32> {
    let st = rustix::fs::statfs(path).ok()?;
    // `f_type` is a signed or unsigned word depending on the platform; the
    // magic numbers are 32 bits wide.
    #[allow(clippy::unnecessary_cast)]
    let magic = st.f_type as u64 as u32;
    Some(magic)
}

/// The network file system kind holding `path`, if any.
pub fn network_kind_of(path: &Path) -> Option<&'static str> {
    magic_of(path).and_then(network_kind)
}

/// True when the user allowed network file systems (`SPOOL_ALLOW_NETWORK_FS=1`).
pub fn allowed_by_env() -> bool {
    std::env::var(OVERRIDE_VAR).is_ok_and(|v| v == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_magic_numbers_are_recognised() {
        assert_eq!(network_kind(0x6969), Some("NFS"));
        assert_eq!(network_kind(0xFF53_4D42), Some("CIFS"));
        assert_eq!(network_kind(0xFE53_4D42), Some("SMB2"));
        assert_eq!(network_kind(0x517B), Some("SMB"));
        assert_eq!(network_kind(0x6573_5546), Some("FUSE"));
    }

    #[test]
    fn local_magic_numbers_are_not() {
        for local in [
            0xEF53,      // ext2/3/4
            0x5846_5342, // xfs
            0x9123_683E, // btrfs
            0x0102_1994, // tmpfs
            0x794C_7630, // overlayfs
            0x2FC1_2FC1, // zfs
            0,
        ] {
            assert_eq!(network_kind(local), None, "{local:#x}");
        }
    }

    #[test]
    fn the_test_folder_is_local() {
        // The tests run on a local disk (or tmpfs); if this fails, the machine's
        // temp folder really is on a network file system.
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(magic_of(dir.path()).is_some());
        assert_eq!(network_kind_of(dir.path()), None);
    }
}
