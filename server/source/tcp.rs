//! TCP PCM inputs (docs/SOURCES.md §2.3): a server that takes one producer at a
//! time, or a client that connects out and reconnects with backoff. Like every reader, they
//! never return EOF: a producer going away is just silence until the next one.

use std::io;
use std::net::SocketAddr;
use std::task::Poll;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tracing::{info, warn};

/// Longest wait between reconnection attempts of a client source.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Listens for PCM producers; one at a time.
#[derive(Debug)]
pub(crate) struct TcpServerReader {
    name: String,
    listener: TcpListener,
    producer: Option<(TcpStream, SocketAddr)>,
    /// A producer that connected after the current one hung up but before its last bytes
    /// were read.
    successor: Option<(TcpStream, SocketAddr)>,
}

impl TcpServerReader {
    /// Binds now, so a taken port is a start-up error.
    pub(crate) fn bind(name: &str, addr: SocketAddr) -> io::Result<Self> {
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(std_listener)?;
        info!(stream = name, addr = %listener.local_addr()?, "tcp source listening for a PCM producer");
        Ok(Self {
            name: name.to_owned(),
            listener,
            producer: None,
            successor: None,
        })
    }

    /// The bound address (useful with port 0).
    #[cfg(test)]
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Bytes the producer sent that wait in our receive queue.
    pub(crate) fn pending_bytes(&self) -> usize {
        use std::os::fd::AsRawFd;
        self.producer
            .as_ref()
            .map_or(0, |(socket, _)| super::queued_bytes(socket.as_raw_fd()))
    }

    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some((producer, peer)) = self.producer.as_mut() else {
                let (socket, peer) = self.listener.accept().await?;
                info!(stream = %self.name, %peer, "PCM producer connected");
                self.producer = Some((socket, peer));
                continue;
            };
            let peer = *peer;
            // A producer that writes ahead always has data waiting, so a second producer is
            // also looked for on every read, not only while the current one is quiet.
            let waiting = std::future::poll_fn(|cx| Poll::Ready(self.listener.poll_accept(cx)));
            if let Poll::Ready(Ok((extra, other))) = waiting.await {
                if self.successor.is_none() && peer_has_finished(producer) {
                    // The current producer hung up and only its last bytes are left: the new
                    // one takes over after them.
                    self.successor = Some((extra, other));
                } else {
                    refuse_second(&self.name, other, peer);
                }
                continue;
            }
            tokio::select! {
                // Reading first: a producer's EOF is seen before the next one is judged a
                // second producer. Both branches are cancel safe.
                biased;
                read = producer.read(buf) => match read {
                    Ok(0) => {
                        info!(stream = %self.name, %peer, "PCM producer disconnected");
                        self.producer = self.successor.take();
                        if let Some((_, next)) = &self.producer {
                            info!(stream = %self.name, peer = %next, "PCM producer connected");
                        }
                    }
                    Ok(n) => return Ok(n),
                    Err(err) => {
                        warn!(stream = %self.name, %peer, error = %err, "PCM producer read failed");
                        self.producer = self.successor.take();
                    }
                },
                accepted = self.listener.accept() => {
                    if let Ok((_extra, other)) = accepted {
                        refuse_second(&self.name, other, peer);
                    }
                }
            }
        }
    }
}

/// Whether the peer has sent its FIN (the socket is in CLOSE_WAIT): all that is left of it
/// is unread data and the EOF.
fn peer_has_finished(stream: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: `tcp_info` is plain data; getsockopt writes at most `len` bytes into it.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: a live socket fd, and `info`/`len` describe a writable buffer.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    const TCP_CLOSE_WAIT: u8 = 8;
    rc == 0 && info.tcpi_state == TCP_CLOSE_WAIT
}

/// Says why a second producer's connection (dropped by the caller) was closed.
fn refuse_second(name: &str, other: SocketAddr, current: SocketAddr) {
    warn!(stream = name, peer = %other, %current, "second PCM producer refused: this tcp source takes one producer at a time");
}

/// Connects out to a PCM producer and keeps reconnecting.
#[derive(Debug)]
pub(crate) struct TcpClientReader {
    name: String,
    addr: SocketAddr,
    stream: Option<TcpStream>,
    backoff: Duration,
}

impl TcpClientReader {
    pub(crate) fn new(name: &str, addr: SocketAddr) -> Self {
        Self {
            name: name.to_owned(),
            addr,
            stream: None,
            backoff: Duration::from_secs(1),
        }
    }

    /// Bytes the producer sent that wait in our receive queue.
    pub(crate) fn pending_bytes(&self) -> usize {
        use std::os::fd::AsRawFd;
        self.stream
            .as_ref()
            .map_or(0, |socket| super::queued_bytes(socket.as_raw_fd()))
    }

    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(stream) = self.stream.as_mut() else {
                match TcpStream::connect(self.addr).await {
                    Ok(stream) => {
                        info!(stream = %self.name, addr = %self.addr, "connected to PCM producer");
                        self.stream = Some(stream);
                        self.backoff = Duration::from_secs(1);
                    }
                    Err(err) => {
                        warn!(stream = %self.name, addr = %self.addr, error = %err, retry_in = ?self.backoff, "cannot connect to PCM producer");
                        tokio::time::sleep(self.backoff).await;
                        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                    }
                }
                continue;
            };
            match stream.read(buf).await {
                Ok(0) => {
                    info!(stream = %self.name, addr = %self.addr, "PCM producer closed the connection; reconnecting");
                    self.stream = None;
                }
                Ok(n) => return Ok(n),
                Err(err) => {
                    warn!(stream = %self.name, addr = %self.addr, error = %err, "PCM producer read failed; reconnecting");
                    self.stream = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn server_takes_one_producer_at_a_time_and_the_next_after_it() {
        let mut reader = TcpServerReader::bind("t", "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = reader.local_addr().unwrap();
        let mut first = TcpStream::connect(addr).await.unwrap();
        first.write_all(b"abcd").await.unwrap();
        let mut buf = [0u8; 4];
        let n = reader.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], &b"abcd"[..n]);

        // A second producer is refused (closed) while the first is connected.
        let mut second = TcpStream::connect(addr).await.unwrap();
        second.write_all(b"zzzz").await.unwrap();
        let reading = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            let n = reader.read(&mut buf).await.unwrap();
            (reader, buf[..n].to_vec())
        });
        let mut probe = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(5), second.read(&mut probe))
            .await
            .expect("refusal within 5 s");
        assert!(
            matches!(closed, Ok(0) | Err(_)),
            "second producer was not refused"
        );
        first.write_all(b"efgh").await.unwrap();
        let (mut reader, data) = reading.await.unwrap();
        assert!(b"efgh".starts_with(&data));

        // When the first goes away, the next one is accepted.
        drop(first);
        let mut third = TcpStream::connect(addr).await.unwrap();
        third.write_all(b"ijkl").await.unwrap();
        let mut buf = [0u8; 4];
        let n = tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(b"ijkl".starts_with(&buf[..n]));
    }

    /// A producer writing ahead always has data waiting; a second one is refused anyway.
    #[tokio::test]
    async fn a_second_producer_is_refused_while_the_first_has_data_waiting() {
        let mut reader = TcpServerReader::bind("t", "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = reader.local_addr().unwrap();
        let mut first = TcpStream::connect(addr).await.unwrap();
        first.write_all(&[1u8; 64 * 1024]).await.unwrap();
        let mut buf = [0u8; 16];
        reader.read(&mut buf).await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        let mut probe = [0u8; 1];
        let refused = async {
            loop {
                // Only reads of the first producer's data, which never runs out here.
                let n = reader.read(&mut buf).await.unwrap();
                assert!(buf[..n].iter().all(|b| *b == 1));
                tokio::task::yield_now().await;
            }
        };
        tokio::select! {
            closed = second.read(&mut probe) => assert!(matches!(closed, Ok(0) | Err(_))),
            () = refused => unreachable!(),
            () = tokio::time::sleep(Duration::from_secs(5)) => panic!("second producer not refused"),
        }
    }

    /// A producer that hangs up with data still unread, and its replacement connecting at
    /// once: the rest of the old data, then the new producer's.
    #[tokio::test]
    async fn a_replacement_producer_follows_the_last_bytes_of_the_previous_one() {
        let mut reader = TcpServerReader::bind("t", "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = reader.local_addr().unwrap();
        let mut first = TcpStream::connect(addr).await.unwrap();
        first.write_all(&[1u8; 4096]).await.unwrap();
        let mut buf = [0u8; 1024];
        let mut seen = reader.read(&mut buf).await.unwrap();
        drop(first);
        let mut second = TcpStream::connect(addr).await.unwrap();
        second.write_all(&[2u8; 4096]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut order = Vec::new();
        while seen < 8192 {
            let n = tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buf))
                .await
                .expect("data from both producers")
                .unwrap();
            order.extend_from_slice(&buf[..n]);
            seen += n;
        }
        let switch = order.iter().position(|b| *b == 2).unwrap();
        assert!(order[..switch].iter().all(|b| *b == 1));
        assert!(order[switch..].iter().all(|b| *b == 2));
    }

    #[tokio::test]
    async fn client_reconnects_to_a_producer_that_comes_back() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut reader = TcpClientReader::new("t", addr);
        let producer = tokio::spawn(async move {
            for round in 0u8..2 {
                let (mut socket, _) = listener.accept().await.unwrap();
                socket.write_all(&[round; 4]).await.unwrap();
            }
        });
        let mut seen = Vec::new();
        while seen.len() < 8 {
            let mut buf = [0u8; 4];
            let n = tokio::time::timeout(Duration::from_secs(10), reader.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            seen.extend_from_slice(&buf[..n]);
        }
        assert_eq!(seen, [0, 0, 0, 0, 1, 1, 1, 1]);
        producer.await.unwrap();
    }
}
