//! One task per TCP connection: TLS, reading into the core, writing what the core queued.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_rustls::TlsAcceptor;
use futures_rustls::server::TlsStream;
use smol::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use smol::net::TcpStream;

use super::rate::TokenBucket;
use super::tls::{TlsSetup, channel_binding};
use super::{Shared, State};
use crate::core::Action;
use crate::limits::READ_CHUNK_BYTES;
use crate::router::ConnId;

/// How long a TLS handshake may take, and how long a write may stall before the peer is
/// considered gone. Both bound how long a dead peer can hold a task.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(60);

enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Left behind while the TCP stream moves into the TLS layer.
    Detached,
}

thread_local! {
    /// One read buffer per executor thread instead of one per connection: bytes are
    /// handed to the core in the same poll that read them, so it is never held across
    /// an await.
    static READ_BUF: std::cell::RefCell<[u8; READ_CHUNK_BYTES]> =
        const { std::cell::RefCell::new([0; READ_CHUNK_BYTES]) };
}

impl Transport {
    /// Reads what is available and feeds it to the core; `Ready(Ok(n))` with the count.
    fn poll_read_into_core(
        &mut self,
        cx: &mut std::task::Context<'_>,
        shared: &Shared,
        id: ConnId,
        scratch: &mut Vec<ConnId>,
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::pin::Pin;
        use std::task::Poll;
        READ_BUF.with(|cell| {
            let Ok(mut buf) = cell.try_borrow_mut() else {
                // Not reachable: the buffer is only borrowed inside this synchronous call.
                return Poll::Ready(Err(std::io::Error::other("read buffer busy")));
            };
            let polled = match self {
                Transport::Plain(s) => Pin::new(s).poll_read(cx, &mut buf[..]),
                Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, &mut buf[..]),
                Transport::Detached => Poll::Ready(Ok(0)),
            };
            if let Poll::Ready(Ok(n)) = polled
                && n > 0
            {
                let mut st = shared.lock();
                let now = shared.now();
                st.core
                    .handle_bytes(id, buf.get(..n).unwrap_or_default(), now);
                shared.dispatch(&mut st, scratch);
            }
            polled
        })
    }

    async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Transport::Plain(s) => write_flush(s, data).await,
            Transport::Tls(s) => write_flush(s.as_mut(), data).await,
            Transport::Detached => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    async fn close(&mut self) {
        let _ = match self {
            Transport::Plain(s) => s.close().await,
            Transport::Tls(s) => s.close().await,
            Transport::Detached => Ok(()),
        };
    }
}

async fn write_flush<W: AsyncWrite + Unpin>(w: &mut W, data: &[u8]) -> std::io::Result<()> {
    w.write_all(data).await?;
    w.flush().await
}

async fn with_timeout<T>(
    d: Duration,
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    smol::future::or(f, async {
        smol::Timer::after(d).await;
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "timed out",
        ))
    })
    .await
}

async fn accept_tls(
    tls: &TlsSetup,
    stream: TcpStream,
    direct: bool,
) -> std::io::Result<(Transport, Option<Vec<u8>>)> {
    let cfg = if direct {
        tls.direct.clone()
    } else {
        tls.starttls.clone()
    };
    let s = with_timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(cfg).accept(stream)).await?;
    let cb = channel_binding(s.get_ref().1);
    Ok((Transport::Tls(Box::new(s)), cb))
}

pub async fn run(
    shared: Arc<Shared>,
    tls: Arc<TlsSetup>,
    stream: TcpStream,
    peer: SocketAddr,
    direct: bool,
) {
    let _ = stream.set_nodelay(true);
    let (mut transport, cb) = if direct {
        // Boxed: the handshake's state would otherwise be part of every connection's
        // future for its whole life.
        match Box::pin(accept_tls(&tls, stream, true)).await {
            Ok(t) => t,
            Err(e) => {
                log::debug!("direct TLS handshake with {peer} failed: {e}");
                return;
            }
        }
    } else {
        (Transport::Plain(stream), None)
    };
    let mut scratch = Vec::new();
    let opened = {
        let mut st = shared.lock();
        let now = shared.now();
        let r = st.core.open(peer.ip(), direct.then_some(cb), now);
        match r {
            Ok(id) => {
                Shared::set_waker(&mut st, id, true);
                shared.dispatch(&mut st, &mut scratch);
                Ok(id)
            }
            Err(why) => Err((why, st.core.refusal(why))),
        }
    };
    let id = match opened {
        Ok(id) => id,
        Err((why, refusal)) => {
            // A flood must not flood the log: one line per interval, with a count.
            if let Some(n) = shared.refusals.hit(shared.now()) {
                log::warn!(
                    "connection from {peer} refused ({why:?}); {n} refused in the last minute"
                );
            }
            let _ = with_timeout(Duration::from_secs(5), transport.write_all(&refusal)).await;
            transport.close().await;
            return;
        }
    };
    log::info!(
        "[{id}] connection from {peer}{}",
        if direct { " (direct TLS)" } else { "" }
    );
    let reason = drive(&shared, &tls, &mut transport, id, &mut scratch).await;
    log::info!("[{id}] closed ({reason})");
    transport.close().await;
    let mut st = shared.lock();
    let now = shared.now();
    st.core.handle_closed(id, now);
    Shared::set_waker(&mut st, id, false);
    shared.dispatch(&mut st, &mut scratch);
}

enum Event {
    Read(std::io::Result<usize>),
    Wake,
}

/// The connection's life; returns why it ended.
async fn drive(
    shared: &Shared,
    tls: &TlsSetup,
    transport: &mut Transport,
    id: ConnId,
    scratch: &mut Vec<ConnId>,
) -> &'static str {
    let (rate, burst) = shared.inbound_rate;
    let mut bucket = TokenBucket::new(rate, burst, shared.now());
    // When the peer may be read again (over its byte rate: TCP pushes back meanwhile).
    let mut read_at = shared.now();
    loop {
        // Output first: a peer that keeps sending must still get its replies written
        // between reads, or its own answers pile up past the outbound limit.
        let ev = smol::future::or(
            async {
                std::future::poll_fn(|cx| shared.poll_wake(id, cx)).await;
                Event::Wake
            },
            async {
                let wait = read_at.saturating_sub(shared.now());
                if wait > 0 {
                    smol::Timer::after(Duration::from_millis(wait)).await;
                }
                // Read into the thread's buffer and hand the bytes to the core within
                // the same poll: an idle connection owns no read buffer.
                Event::Read(
                    std::future::poll_fn(|cx| {
                        transport.poll_read_into_core(cx, shared, id, scratch)
                    })
                    .await,
                )
            },
        )
        .await;
        match ev {
            Event::Read(Ok(0)) => return "peer closed",
            Event::Read(Err(_)) => return "read error",
            Event::Read(Ok(n)) => {
                let now = shared.now();
                read_at = now + bucket.take(n, now);
            }
            Event::Wake => {
                // A fresh buffer each time: the core keeps the empty one, and the written
                // one is dropped below, so an idle connection holds no output buffer.
                // The buffer is borrowed from the server's pool for this write only, so
                // an idle connection holds none and a busy one allocates none.
                let (action, wbuf) = take_output(shared, id);
                let written = wbuf.is_empty()
                    || with_timeout(WRITE_STALL_TIMEOUT, transport.write_all(&wbuf))
                        .await
                        .is_ok();
                shared.lock().return_write_buffer(wbuf);
                if !written {
                    return "write failed or stalled";
                }
                match action {
                    None => {}
                    Some(Action::Close) => return "closed by server",
                    Some(Action::StartTls) => {
                        let Transport::Plain(tcp) =
                            std::mem::replace(transport, Transport::Detached)
                        else {
                            return "STARTTLS on an encrypted stream";
                        };
                        match Box::pin(accept_tls(tls, tcp, false)).await {
                            Ok((t, cb)) => {
                                *transport = t;
                                let mut st = shared.lock();
                                let now = shared.now();
                                st.core.tls_established(id, cb, now);
                                shared.dispatch(&mut st, scratch);
                            }
                            Err(_) => return "STARTTLS handshake failed",
                        }
                    }
                }
            }
        }
    }
}

fn take_output(shared: &Shared, id: ConnId) -> (Option<Action>, Vec<u8>) {
    let mut st: std::sync::MutexGuard<'_, State> = shared.lock();
    let mut buf = st.take_write_buffer();
    let action = st.core.take_output(id, &mut buf);
    (action, buf)
}
