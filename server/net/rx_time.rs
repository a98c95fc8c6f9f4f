//! Reading a client socket together with the kernel's receive time of the bytes.
//!
//! Why: a Time request's "received" stamp is half of a client's clock-offset estimate
//! (snapcast-protocol.md §2.3). Stamped in user space, it includes however long the request
//! waited for the session task: a runtime busy for 60 ms while a client runs its 50 quick
//! time syncs at connect shifts that client's whole notion of server time by ~30 ms (half the
//! delay lands on the request leg only), and snapclient keeps that estimate for minutes. The
//! kernel stamps each segment when it arrives (`SO_TIMESTAMPNS`), independent of us.
//!
//! Bytes are read with `recvmsg` straight into the caller's buffer (no buffer of our own: a
//! session reads a header, then its payload, as before); each read brings the timestamp of
//! the last segment it consumed, which is the receive time of a message completed by it.
//! Without the option (or the control message), the time of the read is used instead.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, RawFd};

use tokio::io::Interest;
use tokio::net::tcp::OwnedReadHalf;

use crate::clock;

/// Asks the kernel to stamp received segments; harmless to fail (stamps are then taken on
/// read).
pub(crate) fn enable(socket: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a live socket fd and a valid c_int option value of the given size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The read half of a client socket, knowing when its bytes arrived.
pub(crate) struct TimedReader {
    socket: OwnedReadHalf,
    /// Server-clock µs at which the bytes of the last read arrived.
    received_us: i64,
}

impl TimedReader {
    pub(crate) fn new(socket: OwnedReadHalf) -> Self {
        Self {
            socket,
            received_us: 0,
        }
    }

    /// When the bytes most recently returned by [`read`](Self::read) arrived, µs on the
    /// server clock.
    pub(crate) fn received_us(&self) -> i64 {
        self.received_us
    }

    /// Reads into `out`; 0 at end of stream.
    pub(crate) async fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let stream: &tokio::net::TcpStream = self.socket.as_ref();
        let fd = stream.as_raw_fd();
        let (n, received) = loop {
            stream.readable().await?;
            match stream.try_io(Interest::READABLE, || recv_stamped(fd, out)) {
                Ok(read) => break read,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) => return Err(err),
            }
        };
        if n > 0 {
            self.received_us = received.unwrap_or_else(clock::now_micros);
        }
        Ok(n)
    }

    /// Fills `out` completely; `UnexpectedEof` if the stream ends first.
    pub(crate) async fn read_exact(&mut self, out: &mut [u8]) -> io::Result<()> {
        let mut filled = 0;
        while filled < out.len() {
            match self.read(&mut out[filled..]).await? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => filled += n,
            }
        }
        Ok(())
    }
}

/// One `recvmsg`: the bytes, and the kernel's receive time of the last segment read as µs on
/// the server clock, when the kernel gave one.
fn recv_stamped(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, Option<i64>)> {
    // Room for one SCM_TIMESTAMPNS control message, aligned as cmsghdr needs.
    let mut control = [MaybeUninit::<u64>::uninit(); 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; zeroed is a valid empty header that we then fill.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 8]>() as _;
    // SAFETY: `msg` points at a live iovec over `buf` and a control buffer of the stated
    // length, both valid for the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut stamp = None;
    // SAFETY: the kernel filled `msg_controllen` bytes of the control buffer; the CMSG
    // macros walk only within it, and an SCM_TIMESTAMPNS payload is a timespec.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::timespec>());
                stamp = Some(realtime_to_server_clock(ts));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, stamp))
}

/// The kernel stamps with CLOCK_REALTIME; the server clock is CLOCK_MONOTONIC. The two are
/// read back to back to convert (a clock step between arrival and now would show, once).
fn realtime_to_server_clock(ts: libc::timespec) -> i64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid, writable timespec; CLOCK_REALTIME always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
    let mono_now = clock::now_micros();
    let micros = |t: libc::timespec| t.tv_sec * 1_000_000 + t.tv_nsec / 1_000;
    let age = (micros(now) - micros(ts)).max(0);
    mono_now - age
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Bytes that sat in the socket while nobody read keep their arrival time.
    #[tokio::test]
    async fn bytes_carry_their_arrival_time_not_the_read_time() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        enable(&server).unwrap();
        let (read_half, _write_half) = server.into_split();
        let mut reader = TimedReader::new(read_half);
        // The kernel switches stamping on for the first socket that asks from a deferred
        // work item: give it a moment.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;

        let sent = clock::now_micros();
        client.write_all(b"hello").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(80)).await;
        let mut buf = [0u8; 3];
        reader.read_exact(&mut buf).await.unwrap();
        let read_at = clock::now_micros();
        assert_eq!(&buf, b"hel");
        let arrived = reader.received_us();
        assert!(
            arrived - sent < 20_000 && read_at - arrived >= 70_000,
            "arrived {} µs after sending, read {} µs after arriving",
            arrived - sent,
            read_at - arrived
        );
        let mut rest = [0u8; 2];
        reader.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"lo");
        drop(client);
        assert_eq!(reader.read(&mut rest).await.unwrap(), 0);
    }
}
