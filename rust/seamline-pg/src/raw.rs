//! The COPY read straight from the socket, for connections without TLS.
//!
//! tokio-postgres hands a COPY over one CopyData message at a time (the server sends one per row):
//! each is parsed into a message object, split off a shared buffer and polled through two streams,
//! 15% of a read's CPU (perf, 5M rows per side), with the socket read 8 KiB at a time. Here the
//! connection is made by tokio-postgres as usual (startup, authentication, the transaction and
//! snapshot), over a socket it shares with this module (`Tap`); for the COPY itself the connection
//! task is told nothing arrives, and `copy` sends the query and reads the frames from a 1 MiB
//! buffer itself, handing each CopyData payload to the row decoder in place.
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
            self.socket.readable().await.map_err(lost)?;
            match self.socket.try_read(&mut buf[end..]) {
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
