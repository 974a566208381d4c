//! The connection table at its capacity and beyond, and the memory bound: every
//! connection over the cap is refused at once with `<resource-constraint/>`, logins work
//! again as soon as a place frees, and the server's RSS stays under the worst-case formula
//! of README "Memory" (`Limits::worst_case_bytes`).

mod common;

use std::time::{Duration, Instant};

use common::{RawClient, Server, ServerOptions, rss_kib};
use xmppd::config::Config;
use xmppd::limits::Limits;

const T: Duration = Duration::from_secs(10);

#[test]
fn connections_up_to_the_cap_and_a_hundred_more() {
    let limits = Limits {
        max_connections_per_ip: 256,
        auth_timeout_secs: 120,
        ..Limits::default()
    };
    let cap = limits.max_connections;
    let config = format!(
        "[c2s]\nrequire_encryption = false\nallow_plain_unencrypted = true\n[limits]\nmax_connections_per_ip = {}\nauth_timeout_secs = {}\n",
        limits.max_connections_per_ip, limits.auth_timeout_secs
    );
    let s = Server::start(
        ServerOptions::plain()
            .config(&config)
            .user("alice@localhost", "secret"),
    );
    let pid = s.pid().expect("server pid");
    let idle = rss_kib(pid).expect("rss");

    let mut held: Vec<RawClient> = Vec::with_capacity(cap);
    for _ in 0..cap {
        let mut c = s.raw_client();
        c.open_stream("localhost");
        c.recv_until("</stream:features>", T);
        held.push(c);
    }
    let full = rss_kib(pid).expect("rss");

    let start = Instant::now();
    for i in 0..100 {
        let mut c = s.raw_client();
        let out = c.recv_until_closed(T);
        assert!(
            out.contains("<resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
            "refusal {i}: {out}"
        );
    }
    let refusals_took = start.elapsed();
    assert!(
        refusals_took < Duration::from_secs(10),
        "refused at once, never a hang: {refusals_took:?}"
    );

    // Everyone inside is unaffected, and a place that frees up is usable at once.
    drop(held.pop());
    let deadline = Instant::now() + T;
    let mut logged_in = false;
    while Instant::now() < deadline && !logged_in {
        let mut c = s.raw_client();
        c.open_stream("localhost");
        match c.try_recv_until("</stream:features>", Duration::from_secs(2)) {
            Ok(_) => {
                c.send(&format!(
                    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
                    common::plain_auth("alice", "secret")
                ));
                c.recv_until("<success", T);
                logged_in = true;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    assert!(logged_in, "a normal login works once a place is free");
    let after = rss_kib(pid).expect("rss");
    let cfg = Config {
        limits: limits.clone(),
        ..Config::default()
    };
    let bound_kib = (xmppd::net::worst_case_bytes(&cfg) / 1024) as u64;
    println!(
        "RSS: idle {idle} KiB, {cap} connections {full} KiB ({} bytes each), after 100 refusals {after} KiB; \
         worst-case bound {bound_kib} KiB ({} KiB per connection)",
        (full.saturating_sub(idle)) * 1024 / cap as u64,
        limits.per_connection_bytes() / 1024
    );
    assert!(
        after < bound_kib,
        "RSS {after} KiB is over the documented worst case {bound_kib} KiB"
    );
    assert!(full < bound_kib);
    drop(held);
}
