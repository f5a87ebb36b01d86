//! Writes below a root that never follow a symlink, and that are atomic.
//!
//! Every file loop writes inside a repository, a worktree or its state dir goes through here.
//! An agent controls what is in its worktree (and a repository can commit symlinks), so a path
//! like `docs/projects/p/reviews/M/I.md` may lead anywhere; loop itself is not sandboxed.
//!
//! Invariants:
//! - The root is the one path the caller trusts (it is opened as given). Every component below it
//!   is opened relative to its parent's descriptor with `O_NOFOLLOW` (and `O_DIRECTORY` for
//!   directories), or in one `openat2` call with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` where the
//!   kernel has it; the component walk is the fallback and the authority for error messages. A
//!   symlink in any component, dangling or not, is [`SafeFsError::Symlink`] naming that path, and
//!   nothing is created, read or written past it.
//! - A relative path below the root is plain: no `..`, not absolute.
//! - Writes are atomic: a temp file in the same directory (`O_CREAT | O_EXCL | O_NOFOLLOW`) is
//!   written, fsynced, renamed over the target relative to the directory's descriptor, and the
//!   directory is fsynced. A failure removes the temp file and leaves the old content whole.
//! - Reads open with `O_NOFOLLOW | O_NONBLOCK` and accept only regular files, so a FIFO or a
//!   device planted at a path loop writes can neither block loop nor be fed to it.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, thiserror::Error)]
pub enum SafeFsError {
    #[error("{path} is a symlink (to {target}); loop does not write through symlinks")]
    Symlink { path: String, target: String },
    #[error("{path} is not a plain path below {root}")]
    NotBelow { path: String, root: String },
    #[error("{path} is not a regular file")]
    NotAFile { path: String },
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
}

impl SafeFsError {
    /// A symlink was met: the caller was steered outside its tree (a guard matter, not an I/O one).
    pub fn is_symlink(&self) -> bool {
        matches!(self, SafeFsError::Symlink { .. })
    }

    /// An I/O failure is loop's environment's (a full disk, EIO); a symlink or a bad path is not.
    pub fn blame(&self) -> crate::blame::Blame {
        match self {
            SafeFsError::Io { source, .. } => crate::blame::Blame::of_io(source),
            _ => crate::blame::Blame::Issue,
        }
    }
}

type Result<T> = std::result::Result<T, SafeFsError>;

fn io_err(path: &Path) -> impl Fn(io::Error) -> SafeFsError + '_ {
    move |source| SafeFsError::Io { path: path.display().to_string(), source }
}

fn cstr(path: &Path, s: &std::ffi::OsStr) -> Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| SafeFsError::NotBelow { path: path.display().to_string(), root: "/".into() })
}

fn last_err() -> io::Error {
    io::Error::last_os_error()
}

/// A directory opened below a root; `shown` is its path for messages.
pub struct Dir {
    fd: OwnedFd,
    shown: PathBuf,
}

/// The plain components of `rel`, or NotBelow.
fn components<'a>(root: &Path, rel: &'a Path) -> Result<Vec<&'a std::ffi::OsStr>> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            _ => {
                return Err(SafeFsError::NotBelow { path: rel.display().to_string(), root: root.display().to_string() })
            }
        }
    }
    Ok(out)
}

fn open_raw(dir: Option<&OwnedFd>, name: &CString, flags: libc::c_int) -> io::Result<OwnedFd> {
    let at = dir.map(|d| d.as_raw_fd()).unwrap_or(libc::AT_FDCWD);
    // SAFETY: name is a valid C string; the returned descriptor is owned here.
    let fd = unsafe { libc::openat(at, name.as_ptr(), flags | libc::O_CLOEXEC, 0o666 as libc::c_uint) };
    if fd < 0 {
        return Err(last_err());
    }
    // SAFETY: fd was just returned by openat and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What `name` in `dir` is, without following it: (is a symlink, its target).
fn symlink_at(dir: &OwnedFd, name: &CString) -> Option<String> {
    // SAFETY: stat is plain data, filled by the kernel.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor, C string and out pointer.
    let rc = unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    if rc != 0 || st.st_mode & libc::S_IFMT != libc::S_IFLNK {
        return None;
    }
    let mut buf = vec![0u8; 4096];
    // SAFETY: buf is writable for its length.
    let n = unsafe { libc::readlinkat(dir.as_raw_fd(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let target = if n >= 0 { String::from_utf8_lossy(&buf[..n as usize]).into_owned() } else { "?".into() };
    Some(target)
}

/// The file type of `name` in `dir` without following it, or None if it does not exist.
fn kind_at(dir: &OwnedFd, name: &CString) -> io::Result<Option<libc::mode_t>> {
    // SAFETY: as in symlink_at.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    if rc != 0 {
        let e = last_err();
        return if e.kind() == io::ErrorKind::NotFound { Ok(None) } else { Err(e) };
    }
    Ok(Some(st.st_mode))
}

#[cfg(target_os = "linux")]
fn openat2_beneath(root: &OwnedFd, rel: &[&std::ffi::OsStr]) -> Option<OwnedFd> {
    // libc's open_how is non_exhaustive; this is the kernel's struct (linux/openat2.h).
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let joined: PathBuf = rel.iter().collect();
    let name = CString::new(joined.as_os_str().as_bytes()).ok()?;
    let how = OpenHow {
        flags: (libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
    };
    // SAFETY: a valid descriptor, C string and struct of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            name.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    // Any failure (no such syscall, a seccomp filter, a missing dir, a symlink) goes to the walk,
    // which creates what is missing and names what is wrong.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

#[cfg(not(target_os = "linux"))]
fn openat2_beneath(_root: &OwnedFd, _rel: &[&std::ffi::OsStr]) -> Option<OwnedFd> {
    None
}

const DIR_FLAGS: libc::c_int = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;

/// Opens `root/rel` as a directory without following a symlink below `root`; with `create`,
/// missing directories are made (one `mkdirat` per component, relative to its parent).
pub fn open_dir(root: &Path, rel: &Path, create: bool) -> Result<Dir> {
    let comps = components(root, rel)?;
    let root_c = cstr(root, root.as_os_str())?;
    let root_fd = open_raw(None, &root_c, libc::O_RDONLY | libc::O_DIRECTORY).map_err(io_err(root))?;
    let shown = root.join(rel);
    if comps.is_empty() {
        return Ok(Dir { fd: root_fd, shown });
    }
    if let Some(fd) = openat2_beneath(&root_fd, &comps) {
        return Ok(Dir { fd, shown });
    }
    let mut cur = root_fd;
    let mut at = root.to_path_buf();
    for comp in comps {
        at.push(comp);
        let name = cstr(&at, comp)?;
        let mut made = false;
        cur = loop {
            match open_raw(Some(&cur), &name, DIR_FLAGS) {
                Ok(fd) => break fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create && !made => {
                    // SAFETY: valid descriptor and C string.
                    let rc = unsafe { libc::mkdirat(cur.as_raw_fd(), name.as_ptr(), 0o777) };
                    if rc != 0 {
                        let e = last_err();
                        if e.kind() != io::ErrorKind::AlreadyExists {
                            return Err(io_err(&at)(e));
                        }
                    }
                    made = true;
                }
                Err(e) => {
                    if let Some(target) = symlink_at(&cur, &name) {
                        return Err(SafeFsError::Symlink { path: at.display().to_string(), target });
                    }
                    return Err(io_err(&at)(e));
                }
            }
        };
    }
    Ok(Dir { fd: cur, shown })
}

/// Splits `rel` into its directory and file name.
fn split<'a>(root: &Path, rel: &'a Path) -> Result<(&'a Path, &'a std::ffi::OsStr)> {
    match (rel.parent(), rel.file_name()) {
        (Some(parent), Some(name)) if components(root, rel).is_ok() => Ok((parent, name)),
        _ => Err(SafeFsError::NotBelow { path: rel.display().to_string(), root: root.display().to_string() }),
    }
}

impl Dir {
    fn path_of(&self, name: &std::ffi::OsStr) -> PathBuf {
        self.shown.join(name)
    }

    /// The file `name` in this directory, or None when it does not exist.
    pub fn read(&self, name: &std::ffi::OsStr) -> Result<Option<Vec<u8>>> {
        let path = self.path_of(name);
        let c = cstr(&path, name)?;
        let fd = match open_raw(Some(&self.fd), &c, libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                if let Some(target) = symlink_at(&self.fd, &c) {
                    return Err(SafeFsError::Symlink { path: path.display().to_string(), target });
                }
                return Err(io_err(&path)(e));
            }
        };
        let mut f = File::from(fd);
        if !f.metadata().map_err(io_err(&path))?.is_file() {
            return Err(SafeFsError::NotAFile { path: path.display().to_string() });
        }
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).map_err(io_err(&path))?;
        Ok(Some(buf))
    }

    /// Replaces `name` atomically with what `fill` writes: temp file, fsync, rename, fsync dir.
    /// A symlink or non-file at `name` is refused, not replaced.
    pub fn write_with(&self, name: &std::ffi::OsStr, fill: impl FnOnce(&mut File) -> io::Result<()>) -> Result<()> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let path = self.path_of(name);
        let c = cstr(&path, name)?;
        let mode = match kind_at(&self.fd, &c).map_err(io_err(&path))? {
            None => None,
            Some(m) if m & libc::S_IFMT == libc::S_IFREG => Some(m & 0o7777),
            Some(m) if m & libc::S_IFMT == libc::S_IFLNK => {
                let target = symlink_at(&self.fd, &c).unwrap_or_else(|| "?".into());
                return Err(SafeFsError::Symlink { path: path.display().to_string(), target });
            }
            Some(_) => return Err(SafeFsError::NotAFile { path: path.display().to_string() }),
        };
        // The pid alone does not make a temp name unique: a process killed mid-write (a power
        // cut) leaves its temp behind, and the next loop may get the same pid (always 1 in a pid
        // namespace). So the name also carries the clock, and a name taken is skipped, never
        // removed: it may belong to a live writer in another namespace.
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        let mut attempt = 0;
        let (fd, tmp_c) = loop {
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
            let mut tmp_name = std::ffi::OsString::from(".");
            tmp_name.push(name);
            tmp_name.push(format!(
                ".loop-tmp-{}-{}-{nanos:x}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            let tmp_path = self.path_of(&tmp_name);
            let tmp_c = cstr(&tmp_path, &tmp_name)?;
            match open_raw(Some(&self.fd), &tmp_c, flags) {
                Ok(fd) => break (fd, tmp_c),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 16 => attempt += 1,
                Err(e) => return Err(io_err(&tmp_path)(e)),
            }
        };
        let mut f = File::from(fd);
        let written = (|| -> io::Result<()> {
            if let Some(m) = mode {
                use std::os::unix::fs::PermissionsExt;
                f.set_permissions(std::fs::Permissions::from_mode(m))?;
            }
            fill(&mut f)?;
            f.flush()?;
            f.sync_all()?;
            // SAFETY: valid descriptor and C strings; both names are relative to the same dir.
            let rc = unsafe { libc::renameat(self.fd.as_raw_fd(), tmp_c.as_ptr(), self.fd.as_raw_fd(), c.as_ptr()) };
            if rc != 0 {
                return Err(last_err());
            }
            Ok(())
        })();
        if let Err(e) = written {
            // SAFETY: valid descriptor and C string.
            unsafe { libc::unlinkat(self.fd.as_raw_fd(), tmp_c.as_ptr(), 0) };
            return Err(io_err(&path)(e));
        }
        self.sync()
    }

    /// Removes the temp files [`Dir::write_with`] of `name` left behind when their writer was
    /// killed before its rename (a power cut): in a worktree, such a file would be taken into
    /// the next commit. Only for a file no other writer can be writing now (write_with never
    /// removes a temp itself, for that reason). Returns how many were removed.
    pub fn remove_leftover_temps(&self, name: &std::ffi::OsStr) -> Result<usize> {
        let mut prefix = std::ffi::OsString::from(".");
        prefix.push(name);
        prefix.push(".loop-tmp-");
        let prefix = prefix.into_vec();
        // The directory's own entries, through its descriptor rather than its path.
        let listing =
            std::fs::read_dir(format!("/proc/self/fd/{}", self.fd.as_raw_fd())).map_err(io_err(&self.shown))?;
        let mut removed = 0;
        for e in listing {
            let e = e.map_err(io_err(&self.shown))?;
            let entry = e.file_name();
            if !entry.as_bytes().starts_with(&prefix) {
                continue;
            }
            let path = self.path_of(&entry);
            let c = cstr(&path, &entry)?;
            if kind_at(&self.fd, &c).map_err(io_err(&path))?.is_none_or(|m| m & libc::S_IFMT != libc::S_IFREG) {
                continue;
            }
            // SAFETY: valid descriptor and C string; unlinkat removes the entry, following nothing.
            if unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) } != 0 {
                let e = last_err();
                if e.kind() != io::ErrorKind::NotFound {
                    return Err(io_err(&path)(e));
                }
                continue;
            }
            removed += 1;
        }
        if removed > 0 {
            self.sync()?;
        }
        Ok(removed)
    }

    /// fsyncs the directory, so a rename or a new entry in it survives a power cut.
    pub fn sync(&self) -> Result<()> {
        // SAFETY: valid descriptor.
        if unsafe { libc::fsync(self.fd.as_raw_fd()) } != 0 {
            return Err(io_err(&self.shown)(last_err()));
        }
        Ok(())
    }

    /// Opens (creating) `name` for appending, or truncated, without following a symlink; for
    /// logs that grow while a phase runs, where a rewrite per line would be absurd.
    pub fn open_log(&self, name: &std::ffi::OsStr, how: Log) -> Result<File> {
        let path = self.path_of(name);
        let c = cstr(&path, name)?;
        let mode = match how {
            Log::Append => libc::O_APPEND,
            Log::Truncate => libc::O_TRUNC,
        };
        let flags = libc::O_WRONLY | libc::O_CREAT | mode | libc::O_NOFOLLOW | libc::O_NONBLOCK;
        match open_raw(Some(&self.fd), &c, flags) {
            Ok(fd) => {
                let f = File::from(fd);
                if !f.metadata().map_err(io_err(&path))?.is_file() {
                    return Err(SafeFsError::NotAFile { path: path.display().to_string() });
                }
                Ok(f)
            }
            Err(e) => match symlink_at(&self.fd, &c) {
                Some(target) => Err(SafeFsError::Symlink { path: path.display().to_string(), target }),
                None => Err(io_err(&path)(e)),
            },
        }
    }
}

/// How [`Dir::open_log`] treats an existing file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Log {
    Append,
    Truncate,
}

/// Reads `root/rel`; None when the file does not exist (its directories may not either).
pub fn read(root: &Path, rel: &Path) -> Result<Option<Vec<u8>>> {
    let (dir, name) = split(root, rel)?;
    match open_dir(root, dir, false) {
        Ok(d) => d.read(name),
        Err(SafeFsError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `root/rel` atomically, creating its directories.
pub fn write(root: &Path, rel: &Path, bytes: &[u8]) -> Result<()> {
    let (dir, name) = split(root, rel)?;
    open_dir(root, dir, true)?.write_with(name, |f| f.write_all(bytes))
}

/// Read-modify-write of `root/rel` as one atomic replace: `change` gets the current content
/// (None when missing) and returns the new one, which is returned too.
pub fn update(root: &Path, rel: &Path, change: impl FnOnce(Option<&[u8]>) -> Vec<u8>) -> Result<Vec<u8>> {
    update_with(root, rel, false, change)
}

/// [`update`]; with `sole_writer` (the caller knows no other writer of this file can be live),
/// temps an earlier, killed writer of it left are removed first ([`Dir::remove_leftover_temps`]).
pub fn update_with(
    root: &Path,
    rel: &Path,
    sole_writer: bool,
    change: impl FnOnce(Option<&[u8]>) -> Vec<u8>,
) -> Result<Vec<u8>> {
    let (dir, name) = split(root, rel)?;
    let d = open_dir(root, dir, true)?;
    if sole_writer {
        d.remove_leftover_temps(name)?;
    }
    let old = d.read(name)?;
    let new = change(old.as_deref());
    d.write_with(name, |f| f.write_all(&new))?;
    Ok(new)
}

/// Opens `root/rel` as a log ([`Dir::open_log`]), creating its directories.
pub fn open_log(root: &Path, rel: &Path, how: Log) -> Result<File> {
    let (dir, name) = split(root, rel)?;
    open_dir(root, dir, true)?.open_log(name, how)
}

/// Fails if any existing component of `root/rel` is a symlink; a missing tail is fine.
pub fn check(root: &Path, rel: &Path) -> Result<()> {
    let (dir, name) = split(root, rel)?;
    let d = match open_dir(root, dir, false) {
        Ok(d) => d,
        Err(SafeFsError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let c = cstr(&d.path_of(name), name)?;
    match symlink_at(&d.fd, &c) {
        Some(target) => Err(SafeFsError::Symlink { path: d.path_of(name).display().to_string(), target }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("victim.txt"), "victim\n").unwrap();
        (t, root, outside)
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn writes_create_dirs_and_replace_atomically() {
        let (_t, root, _) = setup();
        write(&root, Path::new("x/y/z.md"), b"one").unwrap();
        write(&root, Path::new("x/y/z.md"), b"two").unwrap();
        assert_eq!(std::fs::read(root.join("x/y/z.md")).unwrap(), b"two");
        assert_eq!(entries(&root.join("x/y")), ["z.md"], "no temp file is left");
        let new = update(&root, Path::new("x/y/z.md"), |old| [old.unwrap(), b"+"].concat()).unwrap();
        assert_eq!(new, b"two+");
        assert_eq!(read(&root, Path::new("x/y/z.md")).unwrap().unwrap(), b"two+");
        assert_eq!(read(&root, Path::new("nope/z.md")).unwrap(), None);
    }

    #[test]
    fn symlink_in_a_middle_component_is_refused_and_nothing_outside_is_touched() {
        let (_t, root, outside) = setup();
        symlink(&outside, root.join("a/b/reviews")).unwrap();
        let err = write(&root, Path::new("a/b/reviews/victim.txt"), b"pwned").unwrap_err();
        assert!(err.is_symlink(), "{err}");
        assert!(err.to_string().contains(&root.join("a/b/reviews").display().to_string()), "{err}");
        let err = write(&root, Path::new("a/b/reviews/new/deeper.md"), b"pwned").unwrap_err();
        assert!(err.is_symlink(), "{err}");
        assert!(update(&root, Path::new("a/b/reviews/victim.txt"), |_| b"x".to_vec()).unwrap_err().is_symlink());
        assert!(read(&root, Path::new("a/b/reviews/victim.txt")).unwrap_err().is_symlink());
        assert!(check(&root, Path::new("a/b/reviews/victim.txt")).unwrap_err().is_symlink());
        assert_eq!(std::fs::read_to_string(outside.join("victim.txt")).unwrap(), "victim\n");
        assert_eq!(entries(&outside), ["victim.txt"]);
    }

    #[test]
    fn symlink_in_the_last_component_is_refused_not_replaced() {
        let (_t, root, outside) = setup();
        symlink(outside.join("victim.txt"), root.join("a/b/REVIEW.md")).unwrap();
        let err = write(&root, Path::new("a/b/REVIEW.md"), b"pwned").unwrap_err();
        assert!(err.is_symlink() && err.to_string().contains("victim.txt"), "{err}");
        let err = update(&root, Path::new("a/b/REVIEW.md"), |_| b"pwned".to_vec()).unwrap_err();
        assert!(err.is_symlink(), "{err}");
        assert!(open_log(&root, Path::new("a/b/REVIEW.md"), Log::Append).unwrap_err().is_symlink());
        assert!(open_log(&root, Path::new("a/b/REVIEW.md"), Log::Truncate).unwrap_err().is_symlink());
        assert!(check(&root, Path::new("a/b/REVIEW.md")).unwrap_err().is_symlink());
        assert_eq!(std::fs::read_to_string(outside.join("victim.txt")).unwrap(), "victim\n");
        assert!(std::fs::symlink_metadata(root.join("a/b/REVIEW.md")).unwrap().file_type().is_symlink());
        assert_eq!(entries(&root.join("a/b")), ["REVIEW.md"]);
    }

    #[test]
    fn dangling_symlinks_are_refused_and_never_created_through() {
        let (_t, root, outside) = setup();
        let gone = outside.join("not-yet.txt");
        symlink(&gone, root.join("a/file.md")).unwrap();
        symlink(outside.join("no-dir"), root.join("a/dir")).unwrap();
        assert!(write(&root, Path::new("a/file.md"), b"x").unwrap_err().is_symlink());
        assert!(open_log(&root, Path::new("a/file.md"), Log::Append).unwrap_err().is_symlink());
        assert!(write(&root, Path::new("a/dir/f.md"), b"x").unwrap_err().is_symlink());
        assert!(!gone.exists() && !outside.join("no-dir").exists());
    }

    #[test]
    fn directory_symlink_at_the_first_component_is_refused() {
        let (_t, root, outside) = setup();
        symlink(&outside, root.join("docs")).unwrap();
        let err = open_dir(&root, Path::new("docs/projects"), true).err().unwrap();
        assert!(err.is_symlink(), "{err}");
        assert!(!outside.join("projects").exists());
        // The root itself is trusted as named, symlink or not.
        let alias = root.parent().unwrap().join("alias");
        symlink(&root, &alias).unwrap();
        write(&alias, Path::new("a/ok.md"), b"ok").unwrap();
        assert_eq!(std::fs::read(root.join("a/ok.md")).unwrap(), b"ok");
    }

    #[test]
    fn atomic_replace_keeps_the_old_content_on_failure() {
        let (_t, root, _) = setup();
        write(&root, Path::new("a/doc.md"), b"old content\n").unwrap();
        let d = open_dir(&root, Path::new("a"), false).unwrap();
        let err = d
            .write_with("doc.md".as_ref(), |f| {
                f.write_all(b"half of the ne")?;
                Err(io::Error::other("disk full"))
            })
            .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(std::fs::read(root.join("a/doc.md")).unwrap(), b"old content\n");
        assert_eq!(entries(&root.join("a")), ["b", "doc.md"], "the temp file is removed");
    }

    #[test]
    fn paths_that_leave_the_root_are_refused() {
        let (_t, root, _) = setup();
        assert!(matches!(write(&root, Path::new("../x"), b"x"), Err(SafeFsError::NotBelow { .. })));
        assert!(matches!(write(&root, Path::new("/etc/x"), b"x"), Err(SafeFsError::NotBelow { .. })));
    }

    #[test]
    fn a_fifo_is_not_a_file() {
        let (_t, root, _) = setup();
        let fifo = CString::new(root.join("a/pipe.md").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        assert!(matches!(read(&root, Path::new("a/pipe.md")), Err(SafeFsError::NotAFile { .. })));
        assert!(matches!(write(&root, Path::new("a/pipe.md"), b"x"), Err(SafeFsError::NotAFile { .. })));
    }
}
