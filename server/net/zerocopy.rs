//! The only module that issues `sendmsg`/`MSG_ERRQUEUE` syscalls (docs/ZEROCOPY.md, "The
//! kernel contract"). Rules it implements:
//! - `SO_ZEROCOPY` must be set per socket, or `MSG_ZEROCOPY` is silently ignored.
//! - Every successful zerocopy `sendmsg` takes the next u32 id; completions arrive on the
//!   error queue as inclusive id ranges, for IPv4 (`IP_RECVERR`) and IPv6 (`IPV6_RECVERR`).
//! - A completion with `SO_EE_CODE_ZEROCOPY_COPIED` means the kernel copied anyway.
//!
//! Off Linux every function reports zerocopy as unsupported.

use std::io::{self, IoSlice};
use std::os::fd::RawFd;

/// A completion notice: sends `first..=last` (wrapping u32 ids) are released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Completion {
    pub(crate) first: u32,
    pub(crate) last: u32,
    /// The kernel copied the data instead of sending from our pages.
    pub(crate) copied: bool,
}

impl Completion {
    /// Whether `id` lies in this (possibly wrapping) range.
    pub(crate) fn covers(&self, id: u32) -> bool {
        id.wrapping_sub(self.first) <= self.last.wrapping_sub(self.first)
    }

    /// How many sends the range covers.
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        u64::from(self.last.wrapping_sub(self.first)) + 1
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use super::*;

    /// `SO_ZEROCOPY` from `<asm-generic/socket.h>`.
    const SO_ZEROCOPY: libc::c_int = 60;
    /// `SO_EE_ORIGIN_ZEROCOPY` from `<linux/errqueue.h>`.
    const SO_EE_ORIGIN_ZEROCOPY: u8 = 5;
    /// `SO_EE_CODE_ZEROCOPY_COPIED` from `<linux/errqueue.h>`.
    const SO_EE_CODE_ZEROCOPY_COPIED: u8 = 1;

    pub(crate) fn enable(fd: RawFd) -> io::Result<()> {
        let one: libc::c_int = 1;
        // SAFETY: `one` outlives the call and its size is passed exactly.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                SO_ZEROCOPY,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub(crate) fn send(fd: RawFd, bufs: &[IoSlice<'_>], zerocopy: bool) -> io::Result<usize> {
        // SAFETY: an all-zero msghdr is a valid "no address, no control data" header.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        // IoSlice is guaranteed ABI-compatible with iovec on Unix; sendmsg only reads it.
        msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = bufs.len() as _;
        let mut flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        if zerocopy {
            flags |= libc::MSG_ZEROCOPY;
        }
        // SAFETY: `msg` points at `bufs`, which stay borrowed (and alive) for the call.
        let n = unsafe { libc::sendmsg(fd, &msg, flags) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    pub(crate) fn drain(fd: RawFd, on: &mut dyn FnMut(Completion)) -> io::Result<usize> {
        // Room for a few cmsgs of sock_extended_err (+ the offender address); u64 keeps
        // the buffer aligned for cmsghdr.
        let mut control = [0u64; 32];
        let mut seen = 0;
        loop {
            // SAFETY: zeroed msghdr is valid; we point it at our control buffer only.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control) as _;
            // SAFETY: `msg` and `control` are valid for the call; MSG_ERRQUEUE never blocks.
            let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
            if n < 0 {
                let err = io::Error::last_os_error();
                return if err.kind() == io::ErrorKind::WouldBlock {
                    Ok(seen)
                } else {
                    Err(err)
                };
            }
            // SAFETY: the kernel filled `msg_controllen` bytes of well-formed cmsgs.
            let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
            while !cmsg.is_null() {
                // SAFETY: non-null cmsg pointers from CMSG_FIRSTHDR/NXTHDR lie in `control`.
                let header = unsafe { &*cmsg };
                let is_recverr = (header.cmsg_level == libc::SOL_IP
                    && header.cmsg_type == libc::IP_RECVERR)
                    || (header.cmsg_level == libc::SOL_IPV6
                        && header.cmsg_type == libc::IPV6_RECVERR);
                if is_recverr {
                    // SAFETY: an IP(V6)_RECVERR cmsg carries a sock_extended_err; it may be
                    // unaligned inside the buffer, hence read_unaligned.
                    let err: libc::sock_extended_err =
                        unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
                    if err.ee_origin == SO_EE_ORIGIN_ZEROCOPY && err.ee_errno == 0 {
                        seen += 1;
                        on(Completion {
                            first: err.ee_info,
                            last: err.ee_data,
                            copied: err.ee_code & SO_EE_CODE_ZEROCOPY_COPIED != 0,
                        });
                    }
                }
                // SAFETY: `msg` and `cmsg` come from the same recvmsg call.
                cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::*;

    fn unsupported() -> io::Error {
        io::Error::new(io::ErrorKind::Unsupported, "MSG_ZEROCOPY needs Linux")
    }

    pub(crate) fn enable(_fd: RawFd) -> io::Result<()> {
        Err(unsupported())
    }

    pub(crate) fn send(fd: RawFd, bufs: &[IoSlice<'_>], zerocopy: bool) -> io::Result<usize> {
        if zerocopy {
            return Err(unsupported());
        }
        // SAFETY: IoSlice is iovec-compatible; `bufs` outlives the call.
        let n = unsafe { libc::writev(fd, bufs.as_ptr().cast(), bufs.len() as _) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    pub(crate) fn drain(_fd: RawFd, _on: &mut dyn FnMut(Completion)) -> io::Result<usize> {
        Ok(0)
    }
}

pub(crate) use imp::{drain, enable, send};

/// Asks the kernel whether a TCP socket may opt in to zerocopy sends.
pub(crate) fn probe() -> io::Result<()> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    use std::os::fd::AsRawFd;
    enable(socket.as_raw_fd())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_inclusively_and_across_wrap() {
        let c = Completion {
            first: 5,
            last: 9,
            copied: false,
        };
        assert!(c.covers(5) && c.covers(9) && !c.covers(10) && !c.covers(4));
        assert_eq!(c.count(), 5);
        let wrap = Completion {
            first: u32::MAX - 1,
            last: 1,
            copied: true,
        };
        assert!(wrap.covers(u32::MAX) && wrap.covers(0) && wrap.covers(1));
        assert!(!wrap.covers(2) && !wrap.covers(u32::MAX - 2));
        assert_eq!(wrap.count(), 4);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn loopback_sends_complete_as_copied_on_ipv4_and_ipv6() {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        for addr in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(listener) = std::net::TcpListener::bind(addr) else {
                assert!(addr.starts_with('['), "IPv4 loopback must work");
                continue; // a machine without IPv6 loopback
            };
            let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (mut server, _) = listener.accept().unwrap();
            enable(client.as_raw_fd()).unwrap();
            let data = vec![7u8; 64 * 1024];
            for _ in 0..3 {
                let mut sent = 0;
                while sent < data.len() {
                    sent += send(client.as_raw_fd(), &[IoSlice::new(&data[sent..])], true).unwrap();
                }
            }
            let mut sink = vec![0u8; 3 * 64 * 1024];
            server.read_exact(&mut sink).unwrap();
            let mut ranges = Vec::new();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while ranges.iter().map(Completion::count).sum::<u64>() < 3 {
                drain(client.as_raw_fd(), &mut |c| ranges.push(c)).unwrap();
                assert!(
                    std::time::Instant::now() < deadline,
                    "no completions on {addr}"
                );
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            assert_eq!(ranges[0].first, 0, "{addr}: ids start at 0");
            assert!(
                ranges.iter().all(|c| c.copied),
                "{addr}: loopback always copies"
            );
        }
    }
}
