//! `-d`/`--daemon`: snapserver's own daemonising, for init scripts and packages that start it
//! that way (docs/DROP_IN.md). Runs before anything else starts (no threads yet, so forking
//! is sound): detach from the terminal, write the pid file, take the process priority, and,
//! started as root, drop to `server.user`/`server.group`.

use std::ffi::CString;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// What `-d` needs from the config.
#[derive(Debug, Clone)]
pub struct Daemon {
    /// `server.pidfile`.
    pub pidfile: PathBuf,
    /// `server.user`: the user to run as when started as root; empty keeps root.
    pub user: String,
    /// `server.group`: its group; empty takes the user's own.
    pub group: String,
    /// The nice value (-20..19) the `-d` flag gave.
    pub priority: i32,
    /// Where the state goes: made, and given to the daemon's user.
    pub datadir: PathBuf,
}

/// Why daemonising failed; each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// `server.user` names no user of this system.
    #[error(
        "server.user '{0}' is no user on this system (set server.user, or empty to stay root)"
    )]
    NoSuchUser(String),
    /// `server.group` names no group of this system.
    #[error("server.group '{0}' is no group on this system")]
    NoSuchGroup(String),
    /// The priority is out of range.
    #[error("daemon priority {0} is outside -20..19")]
    Priority(i32),
    /// A system call failed.
    #[error("{what}: {source}")]
    Os {
        /// What was being done.
        what: String,
        /// What the OS said.
        source: std::io::Error,
    },
}

fn os(what: impl Into<String>) -> DaemonError {
    DaemonError::Os {
        what: what.into(),
        source: std::io::Error::last_os_error(),
    }
}

/// The user and group ids to switch to, looked up before forking so a bad name is reported
/// on the terminal.
#[derive(Debug, Clone, Copy)]
struct Identity {
    uid: libc::uid_t,
    gid: libc::gid_t,
}

impl Daemon {
    /// Detaches the process: returns in the daemon (the grandchild); the original process and
    /// the intermediate child exit 0. Must be called while the process has one thread.
    ///
    /// # Errors
    ///
    /// A user, group or priority that is not valid, or a pid file that cannot be written
    /// (reported before detaching where it can be).
    pub fn daemonize(&self) -> Result<(), DaemonError> {
        if !(-20..=19).contains(&self.priority) {
            return Err(DaemonError::Priority(self.priority));
        }
        // SAFETY: getuid(2) cannot fail and touches no memory.
        let identity = if unsafe { libc::getuid() } == 0 && !self.user.trim().is_empty() {
            Some(self.identity()?)
        } else {
            None
        };
        for dir in self
            .pidfile
            .parent()
            .into_iter()
            .chain([self.datadir.as_path()])
        {
            std::fs::create_dir_all(dir).map_err(|source| DaemonError::Os {
                what: format!("cannot create {}", dir.display()),
                source,
            })?;
            if let Some(identity) = identity {
                chown(dir, identity)?;
            }
        }
        detach()?;
        // SAFETY: setpriority(2) on this process with a checked value; no memory is touched.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, self.priority) } != 0 {
            return Err(os("cannot set the process priority"));
        }
        self.write_pidfile()?;
        if let Some(identity) = identity {
            chown(&self.pidfile, identity)?;
            switch_to(identity)?;
        }
        Ok(())
    }

    fn identity(&self) -> Result<Identity, DaemonError> {
        let user = self.user.trim();
        let name = CString::new(user).map_err(|_| DaemonError::NoSuchUser(user.to_owned()))?;
        // SAFETY: getpwnam(3) with a NUL-terminated name; the result points into libc's
        // static buffer, read at once, before any other call could reuse it (one thread).
        let passwd = unsafe { libc::getpwnam(name.as_ptr()) };
        if passwd.is_null() {
            return Err(DaemonError::NoSuchUser(user.to_owned()));
        }
        // SAFETY: non-null, so a valid passwd record (see above).
        let (uid, mut gid) = unsafe { ((*passwd).pw_uid, (*passwd).pw_gid) };
        let group = self.group.trim();
        if !group.is_empty() {
            let name =
                CString::new(group).map_err(|_| DaemonError::NoSuchGroup(group.to_owned()))?;
            // SAFETY: as getpwnam above, for getgrnam(3).
            let entry = unsafe { libc::getgrnam(name.as_ptr()) };
            if entry.is_null() {
                return Err(DaemonError::NoSuchGroup(group.to_owned()));
            }
            // SAFETY: non-null, so a valid group record.
            gid = unsafe { (*entry).gr_gid };
        }
        Ok(Identity { uid, gid })
    }

    fn write_pidfile(&self) -> Result<(), DaemonError> {
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&self.pidfile)?;
            writeln!(file, "{}", std::process::id())
        };
        write().map_err(|source| DaemonError::Os {
            what: format!("cannot write the pid file {}", self.pidfile.display()),
            source,
        })
    }
}

/// The classic double fork: the caller's parent gets its prompt back, the daemon is in a
/// session of its own and can never get a controlling terminal again, and its standard
/// streams point to /dev/null.
fn detach() -> Result<(), DaemonError> {
    for step in 0..2 {
        // SAFETY: the process has a single thread (checked by the caller's contract), so the
        // child is a consistent copy; the parent only exits.
        match unsafe { libc::fork() } {
            -1 => return Err(os("cannot fork")),
            0 => {}
            // SAFETY: _exit(2) ends the parent without running its destructors or flushing
            // stdio buffers the child shares.
            _ => unsafe { libc::_exit(0) },
        }
        // SAFETY: setsid(2) in the first child, which is no process group leader.
        if step == 0 && unsafe { libc::setsid() } == -1 {
            return Err(os("cannot start a session"));
        }
    }
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|source| DaemonError::Os {
            what: "cannot open /dev/null".to_owned(),
            source,
        })?;
    use std::os::fd::AsRawFd as _;
    for fd in [libc::STDIN_FILENO, libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        // SAFETY: dup2(2) onto the standard descriptors from a descriptor we own.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } == -1 {
            return Err(os("cannot redirect the standard streams"));
        }
    }
    Ok(())
}

fn chown(path: &Path, identity: Identity) -> Result<(), DaemonError> {
    std::os::unix::fs::chown(path, Some(identity.uid), Some(identity.gid)).map_err(|source| {
        DaemonError::Os {
            what: format!("cannot give {} to the daemon's user", path.display()),
            source,
        }
    })
}

/// Drops root: supplementary groups, group, then user (in that order, while still allowed).
fn switch_to(identity: Identity) -> Result<(), DaemonError> {
    // SAFETY: setgroups(2) with an empty list, then setgid(2) and setuid(2) with ids looked
    // up above; none touches memory of ours.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(os("cannot drop supplementary groups"));
        }
        if libc::setgid(identity.gid) != 0 {
            return Err(os("cannot switch to server.group"));
        }
        if libc::setuid(identity.uid) != 0 {
            return Err(os("cannot switch to server.user"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_and_priorities_are_refused_before_anything_happens() {
        let daemon = |user: &str, group: &str, priority| Daemon {
            pidfile: PathBuf::from("/nonexistent/pid"),
            user: user.to_owned(),
            group: group.to_owned(),
            priority,
            datadir: PathBuf::from("/nonexistent"),
        };
        assert!(matches!(
            daemon("", "", 40).daemonize(),
            Err(DaemonError::Priority(40))
        ));
        assert!(matches!(
            daemon("no-such-user-here", "", 0).identity(),
            Err(DaemonError::NoSuchUser(_))
        ));
        assert!(matches!(
            daemon("root", "no-such-group-here", 0).identity(),
            Err(DaemonError::NoSuchGroup(_))
        ));
        let root = daemon("root", "", 0).identity().expect("root exists");
        assert_eq!((root.uid, root.gid), (0, 0));
    }
}
