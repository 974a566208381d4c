//! Raw XML transcripts against the real binary (plain TCP on loopback, allowed by the
//! test config): stream errors, negotiation order, shutdown and start-up failures.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{RawClient, Server, ServerOptions};

const T: Duration = Duration::from_secs(10);

fn plain_server() -> Server {
    Server::start(ServerOptions::plain().user("alice@localhost", "secret"))
}

/// Opens a stream and logs in as alice with PLAIN, binding `resource`.
fn logged_in(s: &Server, resource: &str) -> RawClient {
    let mut c = s.raw_client();
    c.open_stream("localhost");
    c.recv_until("</stream:features>", T);
    // base64("\0alice\0secret")
    c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHNlY3JldA==</auth>");
    c.recv_until("<success", T);
    c.open_stream("localhost");
    c.recv_until("</stream:features>", T);
    c.send(&format!(
        "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>"
    ));
    c.recv_until("</iq>", T);
    c
}

#[test]
fn stream_header_errors_have_rfc_names_and_close() {
    let s = plain_server();
    let cases = [
        (
            "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>",
            "invalid-namespace",
        ),
        (
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.net' version='1.0'>",
            "host-unknown",
        ),
        (
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost'>",
            "unsupported-version",
        ),
        (
            "<stream:stream xmlns='jabber:client' xmlns:stream='urn:wrong' to='localhost' version='1.0'>",
            "invalid-namespace",
        ),
        (
            "<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]>",
            "restricted-xml",
        ),
        (
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'><a></b>",
            "not-well-formed",
        ),
    ];
    for (input, condition) in cases {
        let mut c = s.raw_client();
        c.send(input);
        let out = c.recv_until_closed(T);
        assert!(
            out.starts_with("<?xml version='1.0'?><stream:stream"),
            "{input}: header first, got {out}"
        );
        assert!(
            out.contains(&format!(
                "<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
            )),
            "{input}: expected {condition}, got {out}"
        );
        assert!(out.ends_with("</stream:stream>"), "{out}");
    }
}

#[test]
fn stanzas_before_authentication_are_not_authorized() {
    let s = plain_server();
    for stanza in [
        "<message to='alice@localhost'><body>x</body></message>",
        "<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>",
        "<presence/>",
    ] {
        let mut c = s.raw_client();
        c.open_stream("localhost");
        c.recv_until("</stream:features>", T);
        c.send(stanza);
        let out = c.recv_until_closed(T);
        assert!(
            out.contains("<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
            "{stanza}: {out}"
        );
    }
    let mut c = s.raw_client();
    c.open_stream("localhost");
    c.recv_until("</stream:features>", T);
    c.send("<hello xmlns='urn:example'/>");
    assert!(c.recv_until_closed(T).contains("<unsupported-stanza-type "));
}

#[test]
fn whitespace_keepalives_ping_and_closing_handshake() {
    let s = plain_server();
    let mut c = logged_in(&s, "raw");
    c.send("\n \n");
    c.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    let out = c.recv_until("/>", T);
    assert_eq!(
        out,
        "<iq type='result' id='p1' from='localhost' to='alice@localhost/raw'/>"
    );
    c.send("</stream:stream>");
    let tail = c.recv_until_closed(T);
    assert!(
        tail.ends_with("</stream:stream>"),
        "the server answers the closing tag: {tail}"
    );
}

#[test]
fn malformed_addresses_and_iqs_get_stanza_errors_not_stream_errors() {
    let s = plain_server();
    let mut c = logged_in(&s, "raw");
    c.send("<message to='@@bad' id='m1'><body>x</body></message>");
    assert!(c.recv_until("</message>", T).contains("<jid-malformed "));
    c.send("<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert!(c.recv_until("</iq>", T).contains("<bad-request "));
    c.send("<iq type='get' id='u' to='localhost'><query xmlns='urn:example:unknown'/></iq>");
    assert!(c.recv_until("</iq>", T).contains("<service-unavailable "));
    c.send("<iq type='get' id='still' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert!(
        c.recv_until("id='still'", T).contains("type='result'"),
        "the stream is still open"
    );
}

#[test]
fn sigterm_closes_streams_with_system_shutdown_and_exits_zero() {
    let mut s = plain_server();
    let mut c = logged_in(&s, "raw");
    let status = s.stop();
    assert!(status.success(), "{status:?}");
    let out = c.recv_until_closed(T);
    assert!(
        out.contains("<system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
        "{out}"
    );
}

#[test]
fn a_damaged_store_stops_the_start_with_the_file_named() {
    let mut s = plain_server();
    // A roster change makes the log hold more than one write.
    let mut c = logged_in(&s, "raw");
    c.send("<iq type='set' id='r'><query xmlns='jabber:iq:roster'><item jid='bob@localhost'/></query></iq>");
    c.recv_until("id='r'", T);
    s.stop();
    let log = s.data_dir().join("store/log");
    let mut bytes = std::fs::read(&log).expect("store log exists");
    assert!(bytes.len() > 64, "log has records");
    // Flip a byte inside the first record: damage followed by intact data is corruption,
    // not a torn tail.
    let i = 40;
    bytes[i] ^= 0xff;
    std::fs::write(&log, &bytes).expect("write damaged log");
    let out = Command::new(env!("CARGO_BIN_EXE_xmppd"))
        .args([
            "serve",
            "--c2s",
            "127.0.0.1:0",
            "--c2s-tls",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(s.data_dir())
        .output()
        .expect("run xmppd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&log.display().to_string()),
        "names the file: {err}"
    );
    assert!(err.contains("damaged"), "{err}");
}
