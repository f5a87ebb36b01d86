//! A FUSE file system that loses what a power cut loses: a passthrough over a backing directory
//! where every metadata operation (create, mkdir, rename, link, unlink, symlink, truncate, chmod,
//! utimes) reaches the backing directory at once, but the DATA written to a file is kept apart, per
//! file, until that file is fsynced (`fsync` or `fdatasync` apply its pending writes in order).
//! Until then reads see the pending data, as they would from a page cache. At a [`CutFs::cut`] the
//! mount goes away, the pending writes are dropped (or, in torn mode, a seeded subset of each
//! write's 512-byte sectors is applied, which is how a device tears a write: the first and last
//! thirds of a frame with zeros between were seen), and a fresh mount is made, so no kernel page
//! cache can serve the dropped data afterwards.
//!
//! It can also freeze the world at a chosen fsync ([`CutFs::arm_fsync_trap`]): the Nth fsync is
//! held unanswered, so its file's writes are exactly "written, never acknowledged" when the cut
//! comes. The dispatcher is single-threaded, so nothing else moves on this file system meanwhile.
//!
//! What it cannot show: metadata is never lost or reordered (a real file system may lose a create
//! or a rename that was not followed by an fsync of its directory, so missing directory fsyncs go
//! unseen here); a file's size only grows at its fsync, as with ext4's `data=ordered`, never ahead
//! of its data; writes through a shared writable `mmap` are not modelled; `sync(2)`/`syncfs(2)` do
//! not reach it (neither does `sync_file_range`, which is right: it is not durable); locks are the
//! kernel's local ones and vanish with the mount, as they would at a reboot.

#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    BackgroundSession, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

/// The kernel may cache names and attributes this long; every change passes through this mount,
/// and a cut replaces the mount, so nothing it caches can go stale.
const TTL: Duration = Duration::from_secs(1);
const SECTOR: u64 = 512;

type Key = (u64, u64);

/// How a cut treats writes that were never fsynced.
#[derive(Clone, Copy, Debug)]
pub enum CutMode {
    /// All of them are lost.
    Drop,
    /// Each 512-byte sector of each pending write reaches the disk or not, by this seed.
    Torn(u64),
    /// The write in flight lands as its first and last thirds with its middle never written (the
    /// tear that was seen on a journal append): with a held fsync, only that file's pending writes
    /// tear and every other file's are dropped; without one, all of them tear so.
    Thirds,
}

/// What a cut threw away, for the test's log.
#[derive(Debug, Default)]
pub struct CutReport {
    pub files: usize,
    pub writes: usize,
    pub bytes: u64,
    pub sectors_applied: u64,
    pub paths: Vec<String>,
}

struct Pending {
    /// The backing inode itself, so renames and unlinks after the write do not matter.
    file: File,
    writes: Vec<(u64, Vec<u8>)>,
    path: String,
}

impl Pending {
    fn end(&self) -> u64 {
        self.writes.iter().map(|(o, d)| o + d.len() as u64).max().unwrap_or(0)
    }
}

#[derive(Default)]
struct Trap {
    countdown: Option<u64>,
    hit: Option<String>,
    held: Option<Key>,
    released: bool,
    fsyncs: u64,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<HashMap<Key, Pending>>,
    trap: Mutex<Trap>,
    trap_cv: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A mounted power-cut file system; unmounted on drop.
pub struct CutFs {
    backing: PathBuf,
    mountpoint: PathBuf,
    shared: Arc<Shared>,
    session: Option<BackgroundSession>,
}

/// Does this machine let us mount FUSE (root and /dev/fuse)? Asked once, by mounting.
pub fn available() -> Result<(), String> {
    if !Path::new("/dev/fuse").exists() {
        return Err("/dev/fuse is missing".into());
    }
    let t = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (b, m) = (t.path().join("b"), t.path().join("m"));
    std::fs::create_dir_all(&b).and_then(|_| std::fs::create_dir_all(&m)).map_err(|e| e.to_string())?;
    let fs = CutFs::mount(&b, &m).map_err(|e| format!("mounting a FUSE file system: {e}"))?;
    drop(fs);
    Ok(())
}

impl CutFs {
    pub fn mount(backing: &Path, mountpoint: &Path) -> io::Result<CutFs> {
        let mut fs = CutFs {
            backing: backing.to_path_buf(),
            mountpoint: mountpoint.to_path_buf(),
            shared: Arc::new(Shared::default()),
            session: None,
        };
        fs.session = Some(fs.spawn()?);
        Ok(fs)
    }

    fn spawn(&self) -> io::Result<BackgroundSession> {
        let root = open_path(libc::AT_FDCWD, &self.backing)?;
        let st = fstat(root.as_raw_fd())?;
        let mut nodes = Nodes { next: 2, ..Nodes::default() };
        nodes.by_key.insert(key(&st), 1);
        nodes.by_ino.insert(1, Node { fd: root, key: key(&st), nlookup: 1 });
        let fs = Fs {
            shared: self.shared.clone(),
            backing: self.backing.clone(),
            nodes: Mutex::new(nodes),
            handles: Mutex::new(Handles { next: 1, ..Handles::default() }),
        };
        let mut config = fuser::Config::default();
        config.mount_options = vec![fuser::MountOption::FSName("loop-powercut".into())];
        fuser::spawn_mount(fs, &self.mountpoint, &config)
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Holds the `n`th fsync from now (1 = the next) of a file with unsynced writes unanswered
    /// until [`CutFs::release_trap`].
    pub fn arm_fsync_trap(&self, n: u64) {
        let mut t = lock(&self.shared.trap);
        *t = Trap { countdown: Some(n.max(1)), fsyncs: t.fsyncs, ..Trap::default() };
    }

    /// The file whose fsync is being held, if the trap went off.
    pub fn trap_hit(&self, wait: Duration) -> Option<String> {
        let t = lock(&self.shared.trap);
        let (t, _) =
            self.shared.trap_cv.wait_timeout_while(t, wait, |t| t.hit.is_none()).unwrap_or_else(|p| p.into_inner());
        t.hit.clone()
    }

    /// Lets a held fsync go (it fails with EIO: its caller is dead by now) and disarms the trap.
    pub fn release_trap(&self) {
        let mut t = lock(&self.shared.trap);
        t.released = true;
        t.countdown = None;
        self.shared.trap_cv.notify_all();
    }

    /// fsync calls with something to make durable since the mount was made.
    pub fn fsyncs(&self) -> u64 {
        lock(&self.shared.trap).fsyncs
    }

    /// The power cut: every process using the mount must be dead. Unmounts, loses (or tears) the
    /// unsynced writes, and mounts afresh.
    pub fn cut(&mut self, mode: CutMode) -> io::Result<CutReport> {
        self.release_trap();
        if let Some(s) = self.session.take() {
            if let Err(e) = s.umount_and_join() {
                // Someone still holds a file open: detach, the data is lost either way.
                let c = CString::new(self.mountpoint.as_os_str().as_bytes())?;
                // SAFETY: a valid C string; umount2 only reads it.
                if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
                    return Err(io::Error::other(format!(
                        "unmount failed ({e}) and detaching too: {}",
                        io::Error::last_os_error()
                    )));
                }
            }
        }
        let held = lock(&self.shared.trap).held;
        let pending = std::mem::take(&mut *lock(&self.shared.pending));
        let mut report = CutReport::default();
        let mut rng = match mode {
            CutMode::Torn(seed) => Some(Rng(seed)),
            _ => None,
        };
        let mut entries: Vec<_> = pending.into_iter().collect();
        entries.sort_by(|a, b| a.1.path.cmp(&b.1.path).then(a.0.cmp(&b.0)));
        for (k, p) in entries {
            let tear_thirds = matches!(mode, CutMode::Thirds) && held.is_none_or(|h| h == k);
            report.files += 1;
            report.paths.push(p.path.clone());
            for (off, data) in &p.writes {
                report.writes += 1;
                report.bytes += data.len() as u64;
                if matches!(mode, CutMode::Thirds) && !tear_thirds {
                    continue;
                }
                if tear_thirds {
                    let third = data.len() / 3;
                    let tail = data.len() - third;
                    p.file.write_all_at(&data[..third], *off)?;
                    p.file.write_all_at(&data[tail..], off + tail as u64)?;
                    report.sectors_applied += 2;
                    continue;
                }
                let Some(rng) = rng.as_mut() else { continue };
                let end = off + data.len() as u64;
                let mut s = off - off % SECTOR;
                while s < end {
                    let (a, b) = (s.max(*off), (s + SECTOR).min(end));
                    if rng.next() % 2 == 0 {
                        p.file.write_all_at(&data[(a - off) as usize..(b - off) as usize], a)?;
                        report.sectors_applied += 1;
                    }
                    s += SECTOR;
                }
            }
        }
        *lock(&self.shared.trap) = Trap::default();
        self.session = Some(self.spawn()?);
        Ok(report)
    }
}

impl Drop for CutFs {
    fn drop(&mut self) {
        self.release_trap();
        if let Some(s) = self.session.take() {
            let _ = s.umount_and_join();
        }
    }
}

/// splitmix64: enough randomness for tearing, reproducible from a printed seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

struct Node {
    /// An O_PATH descriptor of the backing inode: renames of it or its parents change nothing.
    fd: OwnedFd,
    key: Key,
    nlookup: u64,
}

#[derive(Default)]
struct Nodes {
    by_ino: HashMap<u64, Node>,
    by_key: HashMap<Key, u64>,
    next: u64,
}

#[derive(Default)]
struct Handles {
    files: HashMap<u64, Arc<File>>,
    /// A directory's entries as they were at opendir (or a rewind), so removing entries while
    /// reading them (as `rm -r` and git do) skips none.
    dirs: HashMap<u64, Vec<(u64, FileType, OsString)>>,
    next: u64,
}

struct Fs {
    shared: Arc<Shared>,
    backing: PathBuf,
    nodes: Mutex<Nodes>,
    handles: Mutex<Handles>,
}

fn key(st: &libc::stat) -> Key {
    (st.st_dev, st.st_ino)
}

fn errno(e: io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

fn cstr(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn proc_path(fd: RawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{fd}"))
}

fn open_path(dir: RawFd, name: &Path) -> io::Result<OwnedFd> {
    let c = cstr(name.as_os_str())?;
    // SAFETY: valid C string; the returned descriptor is owned below.
    let fd = check(unsafe { libc::openat(dir, c.as_ptr(), libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) })?;
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: zeroed stat is a valid out-buffer; "" with AT_EMPTY_PATH stats the descriptor.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::fstatat(fd, c"".as_ptr(), &mut st, libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW) })?;
    Ok(st)
}

fn time(sec: i64, nsec: i64) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec as u32)
    } else {
        UNIX_EPOCH
    }
}

fn kind(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

impl Fs {
    fn fd(&self, ino: INodeNo) -> Result<(RawFd, Key), Errno> {
        let n = lock(&self.nodes);
        n.by_ino.get(&ino.0).map(|n| (n.fd.as_raw_fd(), n.key)).ok_or(Errno::ESTALE)
    }

    /// The size a reader sees: the backing file's, or further if unsynced writes reach further.
    fn attr(&self, ino: u64, st: &libc::stat) -> FileAttr {
        let mut size = st.st_size as u64;
        if let Some(p) = lock(&self.shared.pending).get(&key(st)) {
            size = size.max(p.end());
        }
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: st.st_blocks as u64,
            atime: time(st.st_atime, st.st_atime_nsec),
            mtime: time(st.st_mtime, st.st_mtime_nsec),
            ctime: time(st.st_ctime, st.st_ctime_nsec),
            crtime: time(st.st_ctime, st.st_ctime_nsec),
            kind: kind(st.st_mode),
            perm: (st.st_mode & 0o7777) as u16,
            nlink: st.st_nlink as u32,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev as u32,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Counts a kernel lookup of `name` in `parent`, returning its attributes.
    fn remember(&self, parent: INodeNo, name: &OsStr) -> Result<FileAttr, Errno> {
        let (pfd, _) = self.fd(parent)?;
        let fd = open_path(pfd, Path::new(name)).map_err(errno)?;
        let st = fstat(fd.as_raw_fd()).map_err(errno)?;
        let k = key(&st);
        let ino = {
            let mut n = lock(&self.nodes);
            match n.by_key.get(&k).copied() {
                Some(ino) => {
                    n.by_ino.get_mut(&ino).expect("node").nlookup += 1;
                    ino
                }
                None => {
                    let ino = n.next;
                    n.next += 1;
                    n.by_key.insert(k, ino);
                    n.by_ino.insert(ino, Node { fd, key: k, nlookup: 1 });
                    ino
                }
            }
        };
        Ok(self.attr(ino, &st))
    }

    fn getattr_of(&self, ino: INodeNo) -> Result<FileAttr, Errno> {
        let (fd, _) = self.fd(ino)?;
        let st = fstat(fd).map_err(errno)?;
        Ok(self.attr(ino.0, &st))
    }

    fn open_file(&self, fd: RawFd) -> io::Result<File> {
        std::fs::OpenOptions::new().read(true).write(true).open(proc_path(fd))
    }

    fn new_handle(&self, f: File) -> u64 {
        let mut h = lock(&self.handles);
        let id = h.next;
        h.next += 1;
        h.files.insert(id, Arc::new(f));
        id
    }

    fn list_dir(&self, fd: RawFd) -> io::Result<Vec<(u64, FileType, OsString)>> {
        let mut out = vec![(1, FileType::Directory, ".".into()), (1, FileType::Directory, "..".into())];
        for e in std::fs::read_dir(proc_path(fd))? {
            let e = e?;
            use std::os::unix::fs::DirEntryExt;
            let ft = e.file_type()?;
            let k = if ft.is_dir() {
                FileType::Directory
            } else if ft.is_symlink() {
                FileType::Symlink
            } else {
                FileType::RegularFile
            };
            out.push((e.ino().max(2), k, e.file_name()));
        }
        Ok(out)
    }

    fn fsync_key(&self, k: Key) -> io::Result<()> {
        let p = lock(&self.shared.pending).remove(&k);
        if let Some(p) = p {
            for (off, data) in &p.writes {
                p.file.write_all_at(data, *off)?;
            }
        }
        Ok(())
    }
}

impl Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.remember(parent, name) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        if ino == INodeNo::ROOT {
            return;
        }
        let mut n = lock(&self.nodes);
        let Some(node) = n.by_ino.get_mut(&ino.0) else { return };
        node.nlookup = node.nlookup.saturating_sub(nlookup);
        if node.nlookup > 0 {
            return;
        }
        let node = n.by_ino.remove(&ino.0).expect("node");
        n.by_key.remove(&node.key);
        // Gone for good: its inode number may be reused, so its unsynced data must not linger.
        if fstat(node.fd.as_raw_fd()).map(|s| s.st_nlink == 0).unwrap_or(true) {
            lock(&self.shared.pending).remove(&node.key);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.getattr_of(ino) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let run = || -> io::Result<()> {
            let (fd, k) = self.fd(ino).map_err(|_| io::Error::from_raw_os_error(libc::ESTALE))?;
            let st = fstat(fd)?;
            let is_link = st.st_mode & libc::S_IFMT == libc::S_IFLNK;
            let path = CString::new(proc_path(fd).as_os_str().as_bytes())?;
            if let Some(m) = mode.filter(|_| !is_link) {
                // SAFETY: valid C string.
                check(unsafe { libc::chmod(path.as_ptr(), m & 0o7777) })?;
            }
            if uid.is_some() || gid.is_some() {
                let (u, g) = (uid.unwrap_or(u32::MAX), gid.unwrap_or(u32::MAX));
                // SAFETY: "" with AT_EMPTY_PATH names the descriptor.
                check(unsafe {
                    libc::fchownat(fd, c"".as_ptr(), u, g, libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW)
                })?;
            }
            if let Some(sz) = size {
                // A truncate is metadata here: it applies at once, and unsynced data past it is gone.
                self.open_file(fd)?.set_len(sz)?;
                let mut pending = lock(&self.shared.pending);
                if let Some(p) = pending.get_mut(&k) {
                    p.writes.retain_mut(|(off, data)| {
                        if *off >= sz {
                            return false;
                        }
                        data.truncate((sz - *off).min(data.len() as u64) as usize);
                        true
                    });
                }
            }
            if (atime.is_some() || mtime.is_some()) && !is_link {
                let ts = |t: Option<TimeOrNow>| match t {
                    None => libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT },
                    Some(TimeOrNow::Now) => libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_NOW },
                    Some(TimeOrNow::SpecificTime(t)) => {
                        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
                        libc::timespec { tv_sec: d.as_secs() as i64, tv_nsec: d.subsec_nanos() as i64 }
                    }
                };
                let times = [ts(atime), ts(mtime)];
                // SAFETY: valid C string and a two-element array.
                check(unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), times.as_ptr(), 0) })?;
            }
            Ok(())
        };
        match run().map_err(errno).and_then(|_| self.getattr_of(ino)) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let run = || -> Result<Vec<u8>, Errno> {
            let (fd, _) = self.fd(ino)?;
            let mut buf = vec![0u8; 4096];
            // SAFETY: the buffer is as long as said; "" names the descriptor (a symlink).
            let n = unsafe { libc::readlinkat(fd, c"".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                return Err(errno(io::Error::last_os_error()));
            }
            buf.truncate(n as usize);
            Ok(buf)
        };
        match run() {
            Ok(b) => reply.data(&b),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let run = || -> Result<FileAttr, Errno> {
            let (pfd, _) = self.fd(parent)?;
            let c = cstr(name).map_err(errno)?;
            // SAFETY: valid C string.
            check(unsafe { libc::mknodat(pfd, c.as_ptr(), mode, rdev as libc::dev_t) }).map_err(errno)?;
            self.remember(parent, name)
        };
        match run() {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, _umask: u32, reply: ReplyEntry) {
        let run = || -> Result<FileAttr, Errno> {
            let (pfd, _) = self.fd(parent)?;
            let c = cstr(name).map_err(errno)?;
            // SAFETY: valid C string.
            check(unsafe { libc::mkdirat(pfd, c.as_ptr(), mode) }).map_err(errno)?;
            self.remember(parent, name)
        };
        match run() {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let run = || -> Result<(), Errno> {
            let (pfd, _) = self.fd(parent)?;
            let c = cstr(name).map_err(errno)?;
            // SAFETY: valid C string.
            check(unsafe { libc::unlinkat(pfd, c.as_ptr(), 0) }).map_err(errno)?;
            Ok(())
        };
        match run() {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let run = || -> Result<(), Errno> {
            let (pfd, _) = self.fd(parent)?;
            let c = cstr(name).map_err(errno)?;
            // SAFETY: valid C string.
            check(unsafe { libc::unlinkat(pfd, c.as_ptr(), libc::AT_REMOVEDIR) }).map_err(errno)?;
            Ok(())
        };
        match run() {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(&self, _req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let run = || -> Result<FileAttr, Errno> {
            let (pfd, _) = self.fd(parent)?;
            let (c, t) = (cstr(link_name).map_err(errno)?, cstr(target.as_os_str()).map_err(errno)?);
            // SAFETY: valid C strings.
            check(unsafe { libc::symlinkat(t.as_ptr(), pfd, c.as_ptr()) }).map_err(errno)?;
            self.remember(parent, link_name)
        };
        match run() {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let run = || -> Result<(), Errno> {
            let (pfd, _) = self.fd(parent)?;
            let (nfd, _) = self.fd(newparent)?;
            let (a, b) = (cstr(name).map_err(errno)?, cstr(newname).map_err(errno)?);
            // SAFETY: valid C strings.
            check(unsafe { libc::renameat2(pfd, a.as_ptr(), nfd, b.as_ptr(), flags.bits()) }).map_err(errno)?;
            Ok(())
        };
        match run() {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let run = || -> Result<FileAttr, Errno> {
            let (fd, _) = self.fd(ino)?;
            let (nfd, _) = self.fd(newparent)?;
            let c = cstr(newname).map_err(errno)?;
            // SAFETY: valid C strings; AT_EMPTY_PATH links the descriptor's inode (root may).
            check(unsafe { libc::linkat(fd, c"".as_ptr(), nfd, c.as_ptr(), libc::AT_EMPTY_PATH) }).map_err(errno)?;
            self.remember(newparent, newname)
        };
        match run() {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let run = || -> Result<u64, Errno> {
            let (fd, _) = self.fd(ino)?;
            Ok(self.new_handle(self.open_file(fd).map_err(errno)?))
        };
        match run() {
            // No FOPEN_KEEP_CACHE: each open drops what the kernel cached of the file.
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let run = || -> Result<(FileAttr, u64), Errno> {
            let (pfd, _) = self.fd(parent)?;
            let c = cstr(name).map_err(errno)?;
            let fl = libc::O_CREAT | libc::O_RDWR | libc::O_CLOEXEC | (flags & (libc::O_EXCL | libc::O_TRUNC));
            // SAFETY: valid C string; the descriptor is owned at once.
            let fd = check(unsafe { libc::openat(pfd, c.as_ptr(), fl, mode) }).map_err(errno)?;
            // SAFETY: fresh descriptor.
            let file = unsafe { File::from_raw_fd(fd) };
            let st = fstat(file.as_raw_fd()).map_err(errno)?;
            // A new file (or one just truncated) has no unsynced past; a reused inode number must
            // not inherit another file's.
            if st.st_size == 0 {
                lock(&self.shared.pending).remove(&key(&st));
            }
            let a = self.remember(parent, name)?;
            Ok((a, self.new_handle(file)))
        };
        match run() {
            Ok((a, fh)) => reply.created(&TTL, &a, Generation(0), FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let run = || -> io::Result<Vec<u8>> {
            let file =
                lock(&self.handles).files.get(&fh.0).cloned().ok_or(io::Error::from_raw_os_error(libc::EBADF))?;
            let st = fstat(file.as_raw_fd())?;
            let pending = lock(&self.shared.pending);
            let p = pending.get(&key(&st));
            let logical = (st.st_size as u64).max(p.map(Pending::end).unwrap_or(0));
            if offset >= logical {
                return Ok(Vec::new());
            }
            let n = (size as u64).min(logical - offset) as usize;
            let mut buf = vec![0u8; n];
            let mut got = 0;
            while got < n {
                let r = file.read_at(&mut buf[got..], offset + got as u64)?;
                if r == 0 {
                    break;
                }
                got += r;
            }
            let _ = ino;
            for (woff, data) in p.map(|p| p.writes.as_slice()).unwrap_or(&[]) {
                let (a, b) = ((*woff).max(offset), (woff + data.len() as u64).min(offset + n as u64));
                if a < b {
                    buf[(a - offset) as usize..(b - offset) as usize]
                        .copy_from_slice(&data[(a - woff) as usize..(b - woff) as usize]);
                }
            }
            Ok(buf)
        };
        match run() {
            Ok(b) => reply.data(&b),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let run = || -> io::Result<()> {
            let (fd, k) = self.fd(ino).map_err(|_| io::Error::from_raw_os_error(libc::ESTALE))?;
            let mut pending = lock(&self.shared.pending);
            let p = match pending.entry(k) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let path = std::fs::read_link(proc_path(fd)).map(|p| p.display().to_string()).unwrap_or_default();
                    e.insert(Pending { file: self.open_file(fd)?, writes: Vec::new(), path })
                }
            };
            p.writes.push((offset, data.to_vec()));
            Ok(())
        };
        match run() {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        lock(&self.handles).files.remove(&fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let k = match self.fd(ino) {
            Ok((_, k)) => k,
            Err(e) => return reply.error(e),
        };
        let pending_path = lock(&self.shared.pending).get(&k).map(|p| p.path.clone());
        // Only an fsync with something to make durable counts towards the trap.
        if let Some(path) = pending_path {
            let mut t = lock(&self.shared.trap);
            t.fsyncs += 1;
            let countdown = t.countdown;
            match countdown {
                Some(1) => {
                    t.countdown = None;
                    t.hit = Some(path);
                    t.held = Some(k);
                    self.shared.trap_cv.notify_all();
                    // Frozen: the power goes while this fsync is in flight.
                    let t = self.shared.trap_cv.wait_while(t, |t| !t.released).unwrap_or_else(|p| p.into_inner());
                    drop(t);
                    return reply.error(Errno::EIO);
                }
                Some(n) => t.countdown = Some(n - 1),
                None => {}
            }
        }
        match self.fsync_key(k) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let run = || -> Result<u64, Errno> {
            let (fd, _) = self.fd(ino)?;
            let list = self.list_dir(fd).map_err(errno)?;
            let mut h = lock(&self.handles);
            let id = h.next;
            h.next += 1;
            h.dirs.insert(id, list);
            Ok(id)
        };
        match run() {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        if offset == 0 {
            // A rewind sees the directory as it is now.
            if let Ok((fd, _)) = self.fd(ino) {
                if let Ok(list) = self.list_dir(fd) {
                    lock(&self.handles).dirs.insert(fh.0, list);
                }
            }
        }
        let h = lock(&self.handles);
        let Some(list) = h.dirs.get(&fh.0) else { return reply.error(Errno::EBADF) };
        for (i, (ino, k, name)) in list.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), (i + 1) as u64, *k, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        lock(&self.handles).dirs.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        // Directories hold only metadata, which this layer never loses.
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let Ok(c) = CString::new(self.backing.as_os_str().as_bytes()) else { return reply.error(Errno::EINVAL) };
        // SAFETY: zeroed statvfs is a valid out-buffer; valid C string.
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
            return reply.error(errno(io::Error::last_os_error()));
        }
        reply.statfs(s.f_blocks, s.f_bfree, s.f_bavail, s.f_files, s.f_ffree, s.f_bsize as u32, 255, s.f_frsize as u32);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EOPNOTSUPP);
    }
}
