//! Whose trouble an error is: loop's environment, or the issue's work.
//!
//! A full disk, an I/O error, a read-only or unwritable state dir is nobody's verdict on the
//! issue: the engine stops the run as interrupted (exit 1) and `loop resume` retries the step once
//! the cause is gone. Everything else (an agent's bad answer, a branch loop may not take) stays the
//! issue's failure. The blame is decided where an error is created, from the OS error code or from
//! the words git uses for those codes, because only there is the evidence whole (git's first line
//! often says "adding files failed" while the line that names the cause comes earlier).

/// Whose trouble an error is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blame {
    /// loop's environment failed (ENOSPC, EIO, EROFS, EDQUOT, permission on loop's own files…).
    Environment,
    /// The issue's work failed, or the error is of a kind resuming would not cure.
    Issue,
}

impl Blame {
    pub fn is_environment(self) -> bool {
        self == Blame::Environment
    }

    /// An I/O error of loop's own: environmental when the OS says the storage or the process's
    /// resources failed. Callers use it for files loop owns (state dir, review doc, git's
    /// objects), so a permission error there is the environment too.
    pub fn of_io(e: &std::io::Error) -> Blame {
        use std::io::ErrorKind as K;
        const CODES: &[i32] = &[
            libc::ENOSPC,
            libc::EDQUOT,
            libc::EIO,
            libc::EROFS,
            libc::EACCES,
            libc::EPERM,
            libc::EFBIG,
            libc::ENOMEM,
            libc::EMFILE,
            libc::ENFILE,
            libc::EAGAIN,
        ];
        if let Some(code) = e.raw_os_error() {
            return if CODES.contains(&code) { Blame::Environment } else { Blame::Issue };
        }
        match e.kind() {
            K::StorageFull | K::ReadOnlyFilesystem | K::PermissionDenied | K::OutOfMemory | K::QuotaExceeded => {
                Blame::Environment
            }
            _ => Blame::Issue,
        }
    }

    /// What git (or gt) said when one of loop's own commands failed. git reports the errno with
    /// `strerror`, so the C library's texts for the codes of [`Blame::of_io`] are the evidence;
    /// "unable to write" and friends are git's own words for a write of its store that failed.
    /// A permission error counts only where it names git's store (a file in the worktree that
    /// the agent made unreadable is the issue's doing).
    pub fn of_git_stderr(text: &str) -> Blame {
        const STRERROR: &[&str] = &[
            "No space left on device",
            "Disk quota exceeded",
            "Input/output error",
            "Read-only file system",
            "File too large",
            "Cannot allocate memory",
            "Too many open files",
            "Resource temporarily unavailable",
        ];
        const GIT_WRITES: &[&str] = &[
            "unable to write",
            "unable to create temporary file",
            "failed to insert into database",
            "insufficient permission for adding an object",
            "short write",
            "fsync error",
            "failed to flush",
        ];
        let env = text.lines().any(|line| {
            STRERROR.iter().any(|s| line.contains(s))
                || GIT_WRITES.iter().any(|s| line.contains(s))
                || ((line.contains("Permission denied") || line.contains("Operation not permitted"))
                    && (line.contains(".git/") || line.contains(".lock'")))
        });
        if env {
            Blame::Environment
        } else {
            Blame::Issue
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_codes_decide_io_errors() {
        for code in [libc::ENOSPC, libc::EIO, libc::EROFS, libc::EDQUOT, libc::EACCES] {
            assert_eq!(Blame::of_io(&std::io::Error::from_raw_os_error(code)), Blame::Environment, "{code}");
        }
        for code in [libc::ENOENT, libc::EEXIST, libc::EISDIR, libc::ENAMETOOLONG] {
            assert_eq!(Blame::of_io(&std::io::Error::from_raw_os_error(code)), Blame::Issue, "{code}");
        }
        assert_eq!(Blame::of_io(&std::io::Error::other("made up")), Blame::Issue);
    }

    #[test]
    fn git_messages_of_a_failing_store_are_the_environment() {
        for said in [
            "fatal: unable to write loose object file: No space left on device",
            "error: unable to create temporary file: No space left on device\nerror: x: failed to insert into database\nfatal: adding files failed",
            "fatal: unable to write new index file",
            "error: insufficient permission for adding an object to repository database .git/objects",
            "fatal: Unable to create '/r/.git/worktrees/A/index.lock': Read-only file system",
            "fatal: Unable to create '/r/.git/index.lock': Permission denied",
            "error: git-upload-pack: Input/output error",
        ] {
            assert_eq!(Blame::of_git_stderr(said), Blame::Environment, "{said}");
        }
        for said in [
            "fatal: a branch named 'loop/M/A' already exists",
            "error: open(\"secret.txt\"): Permission denied\nerror: unable to index file 'secret.txt'",
            "fatal: Unable to create '/r/.git/index.lock': File exists.",
            "",
        ] {
            assert_eq!(Blame::of_git_stderr(said), Blame::Issue, "{said}");
        }
    }
}
