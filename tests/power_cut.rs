//! Power cuts, tried as they happen (issue #16): the whole state dir (journal, logs, worktrees) on
//! a FUSE file system that keeps every unsynced write apart and loses it at the cut
//! (`power_cut/cutfs.rs`, which says what it cannot show), the repository on a normal disk.
//! `loop` runs in its own pid namespace, so killing it kills every process it started, the way
//! a power cut does; then the file system is cut and `loop resume` must end exactly where an
//! uninterrupted run ends, with every record `--json-events` acknowledged still in the journal.
//!
//! Needs root and /dev/fuse (CI has both); without them each test says so and passes vacuously,
//! because a developer's laptop may not allow mounts.
//! `LOOP_POWERCUT_SEED` replays a run of cuts (the seed is printed), `LOOP_POWERCUT_CUTS` sets how
//! many random cases each `--jobs` value gets (default 3; more is the long mode).

mod support;
#[path = "power_cut/cutfs.rs"]
mod cutfs;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cutfs::{CutFs, CutMode, Rng};
use support::*;

/// Skips (loudly) where FUSE cannot be mounted; CI runs as root with /dev/fuse.
fn fuse_or_skip(test: &str) -> bool {
    match cutfs::available() {
        Ok(()) => true,
        Err(e) if std::env::var_os("CI").is_some() => panic!("{test}: FUSE is needed in CI: {e}"),
        Err(e) => {
            eprintln!("{test}: skipped, {e}");
            false
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn seed(test: &str) -> u64 {
    let s = env_u64("LOOP_POWERCUT_SEED").unwrap_or_else(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        t.as_nanos() as u64 ^ u64::from(std::process::id())
    });
    eprintln!("{test}: LOOP_POWERCUT_SEED={s}");
    s
}

struct Area {
    _dir: tempfile::TempDir,
    backing: PathBuf,
    fs: CutFs,
}

impl Area {
    fn new() -> Area {
        let dir = tempfile::Builder::new().prefix("loop-powercut-").tempdir().expect("tempdir");
        let (backing, mnt) = (dir.path().join("backing"), dir.path().join("mnt"));
        std::fs::create_dir_all(&backing).expect("mkdir");
        std::fs::create_dir_all(&mnt).expect("mkdir");
        let fs = CutFs::mount(&backing, &mnt).expect("mount");
        Area { _dir: dir, backing, fs }
    }

    fn mnt(&self) -> PathBuf {
        self.fs.mountpoint().to_path_buf()
    }
}

#[test]
fn the_layer_keeps_synced_data_and_loses_the_rest() {
    if !fuse_or_skip("the_layer_keeps_synced_data_and_loses_the_rest") {
        return;
    }
    let mut a = Area::new();
    let m = a.mnt();
    std::fs::create_dir(m.join("d")).expect("mkdir");
    let synced = std::fs::File::create(m.join("d/synced")).expect("create");
    synced.write_all_at(b"kept", 0).expect("write");
    synced.sync_data().expect("fdatasync");
    synced.write_all_at(b" and lost", 4).expect("write");
    drop(synced);
    std::fs::write(m.join("d/unsynced"), vec![b'x'; 3000]).expect("write");
    assert_eq!(std::fs::read(m.join("d/unsynced")).expect("read").len(), 3000, "a reader sees unsynced data before the cut");
    std::fs::rename(m.join("d/unsynced"), m.join("d/renamed")).expect("rename");
    let torn = std::fs::File::create(m.join("torn")).expect("create");
    torn.write_all_at(&[7u8; 900], 0).expect("write");
    drop(torn);

    let r = a.fs.cut(CutMode::Thirds).expect("cut");
    assert_eq!(r.files, 3, "{r:?}");
    assert_eq!(std::fs::read(m.join("d/synced")).expect("read"), b"kept an\0\0\0ost", "synced data kept; the unsynced write torn");
    let renamed = std::fs::read(m.join("d/renamed")).expect("the rename is metadata and survives");
    assert_eq!(renamed.len(), 3000);
    assert!(renamed[1000..2000].iter().all(|&b| b == 0) && renamed[..1000].iter().all(|&b| b == b'x'));
    let t = std::fs::read(m.join("torn")).expect("read");
    assert_eq!((t.len(), t[0], t[450], t[899]), (900, 7, 0, 7));

    let f = std::fs::File::create(m.join("gone")).expect("create");
    f.write_all_at(b"never synced", 0).expect("write");
    drop(f);
    a.fs.cut(CutMode::Drop).expect("cut");
    assert_eq!(std::fs::read(m.join("gone")).expect("the create survives"), b"", "its data does not");
    assert!(a.backing.join("gone").exists());
}
