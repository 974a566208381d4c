//! The XMPP client side of the load generator: TCP or TLS transport, stream negotiation
//! (RFC 6120 §4), STARTTLS (§5), SASL SCRAM-SHA-1 or PLAIN (§6), resource binding (§7) and the
//! legacy session when a server still requires it (RFC 3921 §3), then raw stanzas.

use crate::scram::{self, ScramClient};
use crate::xml::{self, Event, FrameError, Framer};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures_rustls::TlsConnector;
use futures_rustls::client::TlsStream;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use smol::net::TcpStream;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain TCP, no TLS (loopback only).
    Plain,
    /// Plain TCP upgraded with STARTTLS (RFC 6120 §5).
    StartTls,
    /// TLS from the first byte on the direct-TLS port (XEP-0368).
    DirectTls,
}

impl Transport {
    pub fn parse(s: &str) -> Option<Transport> {
        match s {
            "plain" => Some(Transport::Plain),
            "starttls" => Some(Transport::StartTls),
            "direct" | "directtls" | "direct-tls" => Some(Transport::DirectTls),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Transport::Plain => "plain",
            Transport::StartTls => "starttls",
            Transport::DirectTls => "direct-tls",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    ScramSha1,
    Plain,
}

impl Mechanism {
    pub fn parse(s: &str) -> Option<Mechanism> {
        match s.to_ascii_uppercase().as_str() {
            "SCRAM-SHA-1" => Some(Mechanism::ScramSha1),
            "PLAIN" => Some(Mechanism::Plain),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
        }
    }
}

/// Where and how to log in; users are `{prefix}{index}@{domain}`.
#[derive(Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub tls_port: u16,
    pub domain: String,
    pub prefix: String,
    pub password: String,
    pub mechanism: Mechanism,
    starttls_config: Arc<ClientConfig>,
    direct_config: Arc<ClientConfig>,
}

impl Target {
    pub fn new(
        host: String,
        port: u16,
        tls_port: u16,
        domain: String,
        prefix: String,
        password: String,
        mechanism: Mechanism,
    ) -> Result<Target, BenchError> {
        Ok(Target {
            host,
            port,
            tls_port,
            domain,
            prefix,
            password,
            mechanism,
            starttls_config: crate::tls::client_config(false).map_err(BenchError::Tls)?,
            direct_config: crate::tls::client_config(true).map_err(BenchError::Tls)?,
        })
    }

    pub fn user(&self, index: usize) -> String {
        format!("{}{}", self.prefix, index)
    }

    pub fn bare_jid(&self, index: usize) -> String {
        format!("{}{}@{}", self.prefix, index, self.domain)
    }
}

#[derive(Debug)]
pub enum BenchError {
    Io(io::Error),
    Tls(rustls::Error),
    Frame,
    Closed,
    Timeout(&'static str),
    Protocol(String),
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Io(e) => write!(f, "i/o: {e}"),
            BenchError::Tls(e) => write!(f, "tls: {e}"),
            BenchError::Frame => write!(f, "server sent XML the client cannot split"),
            BenchError::Closed => write!(f, "server closed the connection"),
            BenchError::Timeout(what) => write!(f, "timed out waiting for {what}"),
            BenchError::Protocol(what) => write!(f, "protocol: {what}"),
        }
    }
}

impl std::error::Error for BenchError {}

impl From<io::Error> for BenchError {
    fn from(e: io::Error) -> Self {
        BenchError::Io(e)
    }
}

impl From<FrameError> for BenchError {
    fn from(_: FrameError) -> Self {
        BenchError::Frame
    }
}

fn protocol(what: impl Into<String>) -> BenchError {
    BenchError::Protocol(what.into())
}

/// Runs `fut` with a deadline.
pub async fn timeout<T>(
    d: Duration,
    what: &'static str,
    fut: impl Future<Output = Result<T, BenchError>>,
) -> Result<T, BenchError> {
    smol::future::or(fut, async move {
        smol::Timer::after(d).await;
        Err(BenchError::Timeout(what))
    })
    .await
}

/// Plain or TLS socket behind one type.
pub enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while the socket moves into the TLS layer during STARTTLS.
    Detached,
}

fn detached() -> io::Error {
    io::Error::from(io::ErrorKind::NotConnected)
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Io::Detached => Poll::Ready(Err(detached())),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Io::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Io::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_close(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
            Io::Detached => Poll::Ready(Ok(())),
        }
    }
}

/// Reading side: socket plus framer.
pub struct Reader<R> {
    io: R,
    pub framer: Framer,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// The next event; waits for bytes as needed.
    pub async fn next_event(&mut self) -> Result<Event, BenchError> {
        loop {
            if let Some(ev) = self.framer.next_event()? {
                return Ok(ev);
            }
            self.fill().await?;
        }
    }

    /// Reads once more into the framer.
    pub async fn fill(&mut self) -> Result<(), BenchError> {
        let buf = self.framer.buffer_for_read()?;
        let n = self.io.read(buf).await?;
        self.framer.filled(n);
        if n == 0 {
            Err(BenchError::Closed)
        } else {
            Ok(())
        }
    }

    /// The next top-level element as an owned copy (negotiation; not for hot loops).
    pub async fn next_element(&mut self) -> Result<Vec<u8>, BenchError> {
        match self.next_event().await? {
            Event::Element(r) => Ok(self.framer.bytes(r).to_vec()),
            Event::StreamClose => Err(BenchError::Closed),
            Event::StreamOpen(_) => Err(protocol("unexpected stream header")),
        }
    }

    /// Waits for the iq reply with this id, skipping everything else.
    pub async fn wait_iq(&mut self, id: &[u8]) -> Result<Vec<u8>, BenchError> {
        loop {
            let el = self.next_element().await?;
            if xml::local_name(&el) == b"iq" && xml::attr(&el, b"id") == Some(id) {
                return Ok(el);
            }
        }
    }
}

/// Writing side.
pub struct Writer<W> {
    io: W,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    pub async fn send(&mut self, data: &[u8]) -> Result<(), BenchError> {
        self.io.write_all(data).await?;
        self.io.flush().await?;
        Ok(())
    }

    pub async fn close(&mut self) {
        let _ = self.io.close().await;
    }
}

/// A logged-in (or negotiating) client connection.
pub struct Conn {
    pub reader: Reader<Io>,
    pub jid: String,
}

fn stream_header(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream to='{}' version='1.0' xml:lang='en' \
         xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
        xml::escape(domain)
    )
}

impl Conn {
    async fn connect(target: &Target, transport: Transport) -> Result<Conn, BenchError> {
        let port = if transport == Transport::DirectTls {
            target.tls_port
        } else {
            target.port
        };
        let tcp = TcpStream::connect((target.host.as_str(), port)).await?;
        tcp.set_nodelay(true)?;
        let io = if transport == Transport::DirectTls {
            Io::Tls(Box::new(
                Self::handshake(target, &target.direct_config, tcp).await?,
            ))
        } else {
            Io::Plain(tcp)
        };
        Ok(Conn {
            reader: Reader {
                io,
                framer: Framer::new(),
            },
            jid: String::new(),
        })
    }

    async fn handshake(
        target: &Target,
        config: &Arc<ClientConfig>,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, BenchError> {
        let name = ServerName::try_from(target.domain.clone())
            .map_err(|_| protocol("domain is not a valid TLS server name"))?;
        Ok(TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await?)
    }

    pub async fn send(&mut self, data: &[u8]) -> Result<(), BenchError> {
        self.reader.io.write_all(data).await?;
        self.reader.io.flush().await?;
        Ok(())
    }

    /// Sends a stream header and returns the stream features.
    async fn open_stream(&mut self, domain: &str) -> Result<Vec<u8>, BenchError> {
        self.send(stream_header(domain).as_bytes()).await?;
        match self.reader.next_event().await? {
            Event::StreamOpen(_) => {}
            _ => return Err(protocol("expected a stream header")),
        }
        let features = self.reader.next_element().await?;
        if xml::local_name(&features) != b"features" {
            return Err(protocol(format!(
                "expected stream features, got {}",
                lossy(&features)
            )));
        }
        Ok(features)
    }

    /// Connects and logs in as user `index` with `resource`: TLS as asked, SASL, bind.
    pub async fn login(
        target: &Target,
        transport: Transport,
        index: usize,
        resource: &str,
    ) -> Result<Conn, BenchError> {
        let mut conn = Self::connect(target, transport).await?;
        let mut features = conn.open_stream(&target.domain).await?;
        if transport == Transport::StartTls {
            if !xml::has_child(&features, b"starttls") {
                return Err(protocol("server does not offer STARTTLS"));
            }
            conn.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
                .await?;
            let reply = conn.reader.next_element().await?;
            if xml::local_name(&reply) != b"proceed" {
                return Err(protocol(format!("STARTTLS refused: {}", lossy(&reply))));
            }
            // RFC 6120 §5.4.3.3: nothing read before the TLS handshake may be used after it.
            let Io::Plain(tcp) = std::mem::replace(&mut conn.reader.io, Io::Detached) else {
                return Err(protocol("STARTTLS on a TLS stream"));
            };
            conn.reader.io = Io::Tls(Box::new(
                Self::handshake(target, &target.starttls_config, tcp).await?,
            ));
            conn.reader.framer.reset();
            features = conn.open_stream(&target.domain).await?;
        }
        conn.authenticate(target, index, &features).await?;
        conn.reader.framer.reset();
        let features = conn.open_stream(&target.domain).await?;
        conn.bind(resource, &features).await?;
        Ok(conn)
    }

    async fn authenticate(
        &mut self,
        target: &Target,
        index: usize,
        features: &[u8],
    ) -> Result<(), BenchError> {
        let mechanism = target.mechanism.name();
        let offered = xml::child_texts(features, b"mechanism");
        if !offered.contains(&mechanism.as_bytes()) {
            let list: Vec<String> = offered.iter().map(|m| lossy(m)).collect();
            return Err(protocol(format!(
                "{mechanism} not offered (offered: {})",
                list.join(" ")
            )));
        }
        let user = target.user(index);
        match target.mechanism {
            Mechanism::Plain => {
                let msg = scram::plain_message(&user, &target.password);
                self.send(auth_element("PLAIN", &msg).as_bytes()).await?;
                let reply = self.reader.next_element().await?;
                expect_success(&reply)?;
            }
            Mechanism::ScramSha1 => {
                let (mut client, first) =
                    ScramClient::start(&user, &target.password, scram::client_nonce());
                self.send(auth_element("SCRAM-SHA-1", &B64.encode(first)).as_bytes())
                    .await?;
                let challenge = self.reader.next_element().await?;
                if xml::local_name(&challenge) != b"challenge" {
                    return Err(protocol(format!("SASL: {}", lossy(&challenge))));
                }
                let server_first = decode_b64_text(&challenge)?;
                let fin = client
                    .respond(&server_first)
                    .map_err(|e| protocol(format!("SCRAM: {e:?}")))?;
                let response = format!(
                    "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
                    B64.encode(fin)
                );
                self.send(response.as_bytes()).await?;
                let reply = self.reader.next_element().await?;
                expect_success(&reply)?;
                let server_final = decode_b64_text(&reply)?;
                client
                    .verify(&server_final)
                    .map_err(|e| protocol(format!("SCRAM: {e:?}")))?;
            }
        }
        Ok(())
    }

    async fn bind(&mut self, resource: &str, features: &[u8]) -> Result<(), BenchError> {
        if !xml::has_child(features, b"bind") {
            return Err(protocol("server does not offer resource binding"));
        }
        let bind = format!(
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <resource>{}</resource></bind></iq>",
            xml::escape(resource)
        );
        self.send(bind.as_bytes()).await?;
        let reply = self.reader.wait_iq(b"bind1").await?;
        if xml::attr(&reply, b"type") != Some(b"result") {
            return Err(protocol(format!("bind failed: {}", lossy(&reply))));
        }
        self.jid = xml::child_text(&reply, b"jid")
            .map(lossy)
            .unwrap_or_default();
        // RFC 6121 no longer has the session step; send it only where it is not optional.
        if let Some(session) = session_element(features)
            && !xml::has_child(session, b"optional")
        {
            self.send(b"<iq type='set' id='sess1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
                .await?;
            let reply = self.reader.wait_iq(b"sess1").await?;
            if xml::attr(&reply, b"type") != Some(b"result") {
                return Err(protocol(format!("session failed: {}", lossy(&reply))));
            }
        }
        Ok(())
    }

    /// Sends initial presence (RFC 6121 §4.2) and waits until the server has processed it,
    /// using a ping (XEP-0199) as a barrier.
    pub async fn go_online(&mut self, presence: &str) -> Result<(), BenchError> {
        self.send(presence.as_bytes()).await?;
        self.barrier().await
    }

    /// Round trip to the server: everything sent before it has been processed when it returns.
    pub async fn barrier(&mut self) -> Result<(), BenchError> {
        self.send(b"<iq type='get' id='sync1'><ping xmlns='urn:xmpp:ping'/></iq>")
            .await?;
        self.reader.wait_iq(b"sync1").await?;
        Ok(())
    }

    /// RFC 6120 §4.4: send the closing tag, wait (briefly) for the server's, then close.
    pub async fn close(mut self) {
        let _ = self.send(b"</stream:stream>").await;
        let _ = timeout(Duration::from_secs(3), "stream close", async {
            loop {
                if self.reader.next_event().await? == Event::StreamClose {
                    return Ok(());
                }
            }
        })
        .await;
        let _ = self.reader.io.close().await;
    }

    /// Separate halves, for sessions that read and write at the same time.
    pub fn split(self) -> (Reader<ReadHalf<Io>>, Writer<WriteHalf<Io>>) {
        let (r, w) = smol::io::split(self.reader.io);
        (
            Reader {
                io: r,
                framer: self.reader.framer,
            },
            Writer { io: w },
        )
    }
}

/// The `<session ...>...</session>` element inside the features, if any.
fn session_element(features: &[u8]) -> Option<&[u8]> {
    let start = xml::find(features, b"<session")?;
    let rest = &features[start..];
    let end = xml::find(rest, b"</session>")
        .map(|e| e + 10)
        .or_else(|| xml::find(rest, b"/>").map(|e| e + 2))?;
    Some(&rest[..end])
}

fn auth_element(mechanism: &str, payload: &str) -> String {
    format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mechanism}'>{payload}</auth>"
    )
}

fn expect_success(reply: &[u8]) -> Result<(), BenchError> {
    if xml::local_name(reply) == b"success" {
        Ok(())
    } else {
        Err(protocol(format!("SASL failed: {}", lossy(reply))))
    }
}

fn decode_b64_text(el: &[u8]) -> Result<String, BenchError> {
    let text = el
        .iter()
        .position(|&b| b == b'>')
        .and_then(|gt| {
            if el.get(gt.wrapping_sub(1)) == Some(&b'/') {
                return Some(&[][..]);
            }
            let body = &el[gt + 1..];
            body.iter().position(|&b| b == b'<').map(|lt| &body[..lt])
        })
        .unwrap_or(&[]);
    let text: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let raw = B64
        .decode(&text)
        .map_err(|_| protocol("bad base64 in SASL element"))?;
    String::from_utf8(raw).map_err(|_| protocol("SASL payload is not UTF-8"))
}

pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_sasl_payloads() {
        assert_eq!(
            decode_b64_text(b"<success xmlns='x'>dj1hYmM=</success>").unwrap(),
            "v=abc"
        );
        assert_eq!(decode_b64_text(b"<success xmlns='x'/>").unwrap(), "");
        assert!(decode_b64_text(b"<challenge>!!</challenge>").is_err());
    }

    #[test]
    fn finds_mandatory_session() {
        let f = b"<features><bind/><session xmlns='s'><optional/></session></features>";
        assert!(xml::has_child(session_element(f).unwrap(), b"optional"));
        let f = b"<features><session xmlns='s'/><bind/></features>";
        assert!(!xml::has_child(session_element(f).unwrap(), b"optional"));
    }
}
