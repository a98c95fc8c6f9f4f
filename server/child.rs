//! Child processes the relay starts (process sources, stream plugins): they end when the
//! relay does, however it ends. A graceful shutdown kills them itself; this covers the rest
//! (SIGKILL, a crash), where an orphaned plugin would otherwise keep running, and some
//! (snapserver's meta_mpd.py, say) spin on their closed stdin.

use tokio::process::Command;

/// Makes the kernel send the child SIGTERM when the relay's thread that started it ends.
/// The runtime's worker threads live as long as the relay, and the async tasks that spawn
/// children run on them.
pub(crate) fn end_with_relay(command: &mut Command) -> &mut Command {
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec and calls only
    // async-signal-safe functions (prctl, getppid, kill).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The relay may have ended between fork and prctl.
            if libc::getppid() != parent as libc::pid_t {
                libc::kill(libc::getpid(), libc::SIGTERM);
            }
            Ok(())
        })
    }
}
