//! The COPY read straight from the socket, for connections without TLS.
//!
//! tokio-postgres hands a COPY over one CopyData message at a time (the server sends one per row):
//! each is parsed into a message object, split off a shared buffer and polled through two streams,
//! 15% of a read's CPU (perf, 5M rows per side), with the socket read 8 KiB at a time. Here the
//! connection is made by tokio-postgres as usual (startup, authentication, the transaction and
//! snapshot), over a socket it shares with this module (`Tap`); for the COPY itself the connection
//! task is told nothing arrives, and `copy` sends the query and reads the frames from a 1 MiB
//! buffer itself, handing each CopyData payload to the row decoder in place. The socket wakes the
//! loop once 256 KiB are queued (SO_RCVLOWAT), not at every 8 KiB the server sends; the tail of a
//! COPY is read after a 2 ms wait.
//!
//! Under TLS the socket carries ciphertext, so a TLS connection reads its COPY through
//! tokio-postgres (`raw` is None for it).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::PgError;

/// Whether the COPY loop has the socket, and the connection task's waker while it does.
#[derive(Default)]
struct Lease {
    copying: bool,
    parked: Option<Waker>,
}

/// The socket as the connection task sees it: itself, except that it reads nothing while the COPY
/// loop has the socket.
pub struct Tap {
    socket: Arc<TcpStream>,
    lease: Arc<Mutex<Lease>>,
}

/// The COPY loop's side of a tapped socket.
pub struct RawSocket {
    socket: Arc<TcpStream>,
    lease: Arc<Mutex<Lease>>,
}

/// A connected socket, split into the connection task's side and the COPY loop's.
pub fn tap(socket: TcpStream) -> (Tap, RawSocket) {
    let socket = Arc::new(socket);
    let lease = Arc::new(Mutex::new(Lease::default()));
    (Tap { socket: socket.clone(), lease: lease.clone() }, RawSocket { socket, lease })
}

impl AsyncRead for Tap {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        {
            let mut lease = self.lease.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if lease.copying {
                lease.parked = Some(cx.waker().clone());
                return Poll::Pending;
            }
        }
        loop {
            std::task::ready!(self.socket.poll_read_ready(cx))?;
            match self.socket.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Tap {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            std::task::ready!(self.socket.poll_write_ready(cx))?;
            match self.socket.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return Poll::Ready(other),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // the socket closes when both sides are dropped
        Poll::Ready(Ok(()))
    }
}

/// Message tags the COPY loop reads (PostgreSQL's protocol, "Message Formats").
const COPY_DATA: u8 = b'd';
const COPY_OUT_RESPONSE: u8 = b'H';
const ERROR_RESPONSE: u8 = b'E';
const READY_FOR_QUERY: u8 = b'Z';

impl RawSocket {
    /// Send `sql` (a COPY ... TO STDOUT) as a simple query and hand every CopyData payload to
    /// `data`, until the server is ready for the next query. The connection task must be idle (no
    /// request in flight): the socket is taken from it for good.
    pub async fn copy(
        &self,
        sql: &str,
        mut data: impl FnMut(&[u8]) -> Result<(), PgError>,
    ) -> Result<(), PgError> {
        self.lease.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).copying = true;
        let mut query = bytes::BytesMut::new();
        postgres_protocol::message::frontend::query(sql, &mut query)
            .map_err(|e| PgError::Decode(format!("cannot send the COPY: {e}")))?;
        self.write_all(&query).await?;
        let _batched = RecvLowWater::set(&self.socket, LOW_WATER);

        let mut buf = vec![0u8; 1 << 20];
        let (mut start, mut end) = (0usize, 0usize);
        let mut started = false;
        let mut failed: Option<PgError> = None;
        loop {
            // every complete frame in the buffer: tag, length (itself included), body
            while end - start >= 5 {
                let tag = buf[start];
                let len = u32::from_be_bytes(buf[start + 1..start + 5].try_into().unwrap()) as usize;
                if len < 4 {
                    return Err(PgError::Decode(format!("invalid message length {len}")));
                }
                let frame_end = start + 1 + len;
                if frame_end > end {
                    if 1 + len > buf.len() {
                        buf.resize(1 + len, 0);
                    }
                    break;
                }
                let body = &buf[start + 5..frame_end];
                match tag {
                    COPY_DATA => data(body)?,
                    COPY_OUT_RESPONSE => started = true,
                    ERROR_RESPONSE => failed = Some(server_error(body)),
                    // a ReadyForQuery before the COPY's answer ends a request made before it
                    READY_FOR_QUERY if started || failed.is_some() => {
                        return failed.map_or(Ok(()), Err);
                    }
                    // CopyDone, CommandComplete, notices, parameter changes, ...
                    _ => {}
                }
                start = frame_end;
            }
            if start > 0 {
                buf.copy_within(start..end, 0);
                end -= start;
                start = 0;
            }
            // Woken at LOW_WATER bytes; the tail of the stream (less than that) is read once the
            // wait times out (straight from the socket: tokio's readiness still says not ready).
            let read = match tokio::time::timeout(TAIL_WAIT, self.socket.readable()).await {
                Ok(ready) => {
                    ready.map_err(lost)?;
                    self.socket.try_read(&mut buf[end..])
                }
                Err(_) => recv_now(&self.socket, &mut buf[end..]),
            };
            match read {
                // the server's FATAL (a terminated backend), when it came before the close
                Ok(0) => {
                    return Err(failed.unwrap_or_else(|| {
                        PgError::Unavailable("server closed the connection unexpectedly".into())
                    }))
                }
                Ok(n) => end += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(failed.unwrap_or_else(|| lost(e))),
            }
        }
    }

    async fn write_all(&self, mut data: &[u8]) -> Result<(), PgError> {
        while !data.is_empty() {
            self.socket.writable().await.map_err(lost)?;
            match self.socket.try_write(data) {
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(lost(e)),
            }
        }
        Ok(())
    }
}

/// Bytes the socket buffers before it wakes the COPY loop (SO_RCVLOWAT): the server sends 8 KiB at
/// a time, and a loop woken for each read them 12 KiB at a time, an epoll wait, a context switch
/// and a window-update ACK each (a third of the reader's CPU, perf, 5M rows per side).
const LOW_WATER: i32 = 256 << 10;
/// How long the COPY loop waits for LOW_WATER bytes before it reads what there is.
const TAIL_WAIT: std::time::Duration = std::time::Duration::from_millis(2);

/// SO_RCVLOWAT on a socket while this lives (1, the default, again when dropped).
struct RecvLowWater<'a>(&'a TcpStream);

impl<'a> RecvLowWater<'a> {
    fn set(socket: &'a TcpStream, bytes: i32) -> Self {
        set_recv_low_water(socket, bytes);
        RecvLowWater(socket)
    }
}

impl Drop for RecvLowWater<'_> {
    fn drop(&mut self) {
        set_recv_low_water(self.0, 1);
    }
}

/// What the socket holds now, up to `buf.len()` bytes, without waiting (WouldBlock: nothing).
fn recv_now(socket: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: recv writes at most `buf.len()` bytes into `buf`, on a socket this stream owns.
    let n = unsafe { libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Best effort: a system without the option reads as before.
fn set_recv_low_water(socket: &TcpStream, bytes: i32) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a valid pointer to a c_int, on a
    // socket this stream owns (open for its lifetime).
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&bytes as *const i32).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn lost(e: io::Error) -> PgError {
    PgError::Unavailable(format!("server closed the connection unexpectedly ({e})"))
}

/// The SQLSTATE and message of an ErrorResponse body (fields: a type byte, a C string; then 0).
fn server_error(body: &[u8]) -> PgError {
    let (mut sqlstate, mut message) = (String::new(), String::new());
    for field in body.split(|b| *b == 0) {
        let Some((kind, text)) = field.split_first() else { break };
        match kind {
            b'C' => sqlstate = String::from_utf8_lossy(text).into_owned(),
            b'M' => message = String::from_utf8_lossy(text).into_owned(),
            _ => {}
        }
    }
    PgError::from_server(sqlstate, message)
}
