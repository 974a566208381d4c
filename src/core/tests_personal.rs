//! Transcript tests of the issue 7 services (PEP, caps, vCard, private storage,
//! bookmarks, blocking, registration), with the harness of `core::tests`.

use super::*;
use crate::db::{RosterItem, Subscription};
use crate::xep::state::ServicesConfig;

const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";

/// Makes `a` and `b` mutual contacts (subscription both), as the dance would.
pub(crate) fn befriend(h: &mut H, a: &str, b: &str) {
    for (u, c) in [(a, b), (b, a)] {
        h.core.db.apply(&Record::RosterSet {
            user: u.into(),
            ver: 1,
            jid: format!("{c}@localhost"),
            item: RosterItem {
                subscription: Subscription::Both,
                ..RosterItem::default()
            },
        });
    }
}

/// Announces capabilities with these `+notify` nodes and answers the server's disco#info
/// query (when it asks); returns what the session received after answering.
fn announce_caps(h: &mut H, id: ConnId, nodes: &[&str]) -> String {
    let mut features = String::new();
    for n in nodes {
        features.push_str(&format!("<feature var='{n}+notify'/>"));
    }
    let query = format!(
        "<query xmlns='http://jabber.org/protocol/disco#info'><identity category='client' type='pc' name='t'/>{features}</query>"
    );
    let raw = crate::xml::RawElement::from_xml(&query, crate::xml::NS_CLIENT).unwrap();
    let el = crate::xml::Element::parse(&raw, crate::xml::NS_CLIENT).unwrap();
    let ver = crate::xep::xep0115_caps::verification_hash(&el).unwrap();
    h.send(
        id,
        &format!(
            "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='http://t' ver='{ver}'/></presence>"
        ),
    );
    let out = h.recv(id);
    let Some(start) = out.find("id='xmppd-q-") else {
        return out; // cached: no query
    };
    let qid: String = out[start + 4..]
        .chars()
        .take_while(|c| *c != '\'')
        .collect();
    assert!(out.contains(&format!("node='http://t#{ver}'")), "{out}");
    h.send(
        id,
        &format!(
            "<iq type='result' id='{qid}' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info' node='http://t#{ver}'><identity category='client' type='pc' name='t'/>{features}</query></iq>"
        ),
    );
    h.recv(id)
}

fn publish(node: &str, id: &str, payload: &str, options: &str) -> String {
    let opts = if options.is_empty() {
        String::new()
    } else {
        format!(
            "<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>{options}</x></publish-options>"
        )
    };
    format!(
        "<iq type='set' id='pub-{id}'><pubsub xmlns='{NS_PUBSUB}'><publish node='{node}'><item id='{id}'>{payload}</item></publish>{opts}</pubsub></iq>"
    )
}

fn field(var: &str, value: &str) -> String {
    format!("<field var='{var}'><value>{value}</value></field>")
}

#[test]
fn pep_publish_notifies_interested_contacts_and_enforces_access() {
    let mut h = H::new(false);
    h.core
        .admin_user_set("carol", creds().clone(), true)
        .unwrap();
    befriend(&mut h, "alice", "bob");
    let a = h.online("alice", "phone", 0);
    let b = h.online("bob", "pc", 0);
    let c = h.online("carol", "pc", 0);
    h.recv(a);
    announce_caps(&mut h, a, &["urn:xmpp:avatar:metadata"]);
    announce_caps(&mut h, b, &["urn:xmpp:avatar:metadata"]);
    announce_caps(&mut h, c, &["urn:xmpp:avatar:metadata"]);
    h.recv(a);
    h.send(
        a,
        &publish(
            "urn:xmpp:avatar:metadata",
            "h1",
            "<metadata xmlns='urn:xmpp:avatar:metadata'/>",
            "",
        ),
    );
    assert_eq!(h.recv(a), "", "held until durable");
    h.commit();
    let out = h.recv(a);
    assert!(
        out.contains("id='pub-h1'") && out.contains("<item id='h1'/>"),
        "{out}"
    );
    assert!(out.contains("<event xmlns='http://jabber.org/protocol/pubsub#event'><items node='urn:xmpp:avatar:metadata'><item id='h1'"), "own resources are notified: {out}");
    let bob = h.recv(b);
    assert!(
        bob.contains("from='alice@localhost' to='bob@localhost/pc' type='headline'")
            && bob.contains("<metadata xmlns='urn:xmpp:avatar:metadata'/>"),
        "{bob}"
    );
    assert_eq!(h.recv(c), "", "no presence subscription: no notification");
    // Items: the contact may read, the stranger may not (presence access model).
    let get = format!(
        "<iq type='get' id='g' to='alice@localhost'><pubsub xmlns='{NS_PUBSUB}'><items node='urn:xmpp:avatar:metadata'/></pubsub></iq>"
    );
    h.send(b, &get);
    let got = h.recv(b);
    assert!(
        got.contains("type='result'") && got.contains("<item id='h1'><metadata"),
        "{got}"
    );
    h.send(c, &get);
    let refused = h.recv(c);
    assert!(
        refused.contains("<not-authorized ")
            && refused.contains(
                "<presence-subscription-required xmlns='http://jabber.org/protocol/pubsub#errors'/>"
            ),
        "{refused}"
    );
    // A stranger cannot publish to alice's service.
    h.send(
        c,
        &publish("x", "1", "<x xmlns='urn:x'/>", "")
            .replace("<iq type='set'", "<iq type='set' to='alice@localhost'"),
    );
    assert!(h.recv(c).contains("<forbidden "));
}

#[test]
fn publish_options_preconditions_and_open_access() {
    let mut h = H::new(false);
    h.core
        .admin_user_set("carol", creds().clone(), true)
        .unwrap();
    let a = h.online("alice", "phone", 0);
    let c = h.online("carol", "pc", 0);
    let devicelist = "eu.siacs.conversations.axolotl.devicelist";
    let list = "<list xmlns='eu.siacs.conversations.axolotl'><device id='1'/></list>";
    // Created with open access through publish-options, as Conversations does.
    h.send(
        a,
        &publish(
            devicelist,
            "current",
            list,
            &field("pubsub#access_model", "open"),
        ),
    );
    h.commit();
    assert!(h.recv(a).contains("id='pub-current'"));
    let get = format!(
        "<iq type='get' id='g' to='alice@localhost'><pubsub xmlns='{NS_PUBSUB}'><items node='{devicelist}' max_items='1'/></pubsub></iq>"
    );
    h.send(c, &get);
    assert!(
        h.recv(c).contains("<device id='1'/>"),
        "open access lets anyone read"
    );
    // A node with the default (presence) model: the precondition fails.
    h.send(a, &publish("urn:x", "1", "<x xmlns='urn:x'/>", ""));
    h.commit();
    h.recv(a);
    h.send(
        a,
        &publish(
            "urn:x",
            "2",
            "<x xmlns='urn:x'/>",
            &field("pubsub#access_model", "open"),
        ),
    );
    let out = h.recv(a);
    assert!(
        out.contains("type='error'")
            && out.contains("<conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>")
            && out.contains(
                "<precondition-not-met xmlns='http://jabber.org/protocol/pubsub#errors'/>"
            ),
        "{out}"
    );
    // Reconfigure (what the client does next), then publishing with the option works.
    h.send(a, "<iq type='set' id='cfg'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='urn:x'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field><field var='pubsub#access_model'><value>open</value></field></x></configure></pubsub></iq>");
    h.commit();
    assert!(h.recv(a).contains("id='cfg'"));
    h.send(
        a,
        &publish(
            "urn:x",
            "2",
            "<x xmlns='urn:x'/>",
            &field("pubsub#access_model", "open"),
        ),
    );
    h.commit();
    assert!(h.recv(a).contains("type='result' id='pub-2'"));
    // max_items 'max' keeps many items; items come back by id and newest-N.
    for i in 0..3 {
        h.send(
            a,
            &publish(
                "urn:b",
                &format!("i{i}"),
                "<b xmlns='urn:b'/>",
                &field("pubsub#max_items", "max"),
            ),
        );
    }
    h.commit();
    h.recv(a);
    h.send(a, &format!("<iq type='get' id='g2'><pubsub xmlns='{NS_PUBSUB}'><items node='urn:b' max_items='2'/></pubsub></iq>"));
    let out = h.recv(a);
    assert!(
        !out.contains("i0") && out.contains("i1") && out.contains("i2"),
        "{out}"
    );
    // Retract with notify, delete.
    h.send(a, &format!("<iq type='set' id='r'><pubsub xmlns='{NS_PUBSUB}'><retract node='urn:b' notify='true'><item id='i2'/></retract></pubsub></iq>"));
    h.commit();
    assert!(h.recv(a).contains("id='r'"));
    h.send(a, "<iq type='set' id='d'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='urn:b'/></pubsub></iq>");
    h.commit();
    assert!(h.recv(a).contains("id='d'"));
    h.send(
        a,
        &format!(
            "<iq type='get' id='g3'><pubsub xmlns='{NS_PUBSUB}'><items node='urn:b'/></pubsub></iq>"
        ),
    );
    assert!(h.recv(a).contains("<item-not-found "));
}

#[test]
fn last_items_follow_capabilities_and_unknown_caps_are_asked_once() {
    let mut h = H::new(false);
    befriend(&mut h, "alice", "bob");
    let a = h.online("alice", "phone", 0);
    h.send(
        a,
        &publish(
            "urn:xmpp:avatar:metadata",
            "h1",
            "<metadata xmlns='urn:xmpp:avatar:metadata'/>",
            "",
        ),
    );
    h.send(a, &publish("urn:other", "o1", "<o xmlns='urn:other'/>", ""));
    h.commit();
    h.recv(a);
    let b = h.online("bob", "pc", 0);
    assert!(
        !h.recv(b).contains("pubsub#event"),
        "no caps, no notifications"
    );
    let out = announce_caps(&mut h, b, &["urn:xmpp:avatar:metadata"]);
    assert!(
        out.contains("<items node='urn:xmpp:avatar:metadata'><item id='h1'"),
        "last item once interests are known: {out}"
    );
    assert!(!out.contains("urn:other"), "{out}");
    // A second client of the same version: answered from the cache, no query.
    let b2 = h.online("bob", "tablet", 0);
    let out = announce_caps(&mut h, b2, &["urn:xmpp:avatar:metadata"]);
    assert!(!out.contains("xmppd-q-"), "{out}");
    assert!(out.contains("<item id='h1'"), "{out}");
}

#[test]
fn blocking_refuses_both_ways_and_pushes() {
    let mut h = H::new(false);
    befriend(&mut h, "alice", "bob");
    let a = h.online("alice", "phone", 0);
    let a2 = h.online("alice", "pc", 0);
    let b = h.online("bob", "pc", 0);
    h.recv(a);
    h.recv(a2);
    h.send(
        a2,
        "<iq type='get' id='bl'><blocklist xmlns='urn:xmpp:blocking'/></iq>",
    );
    assert!(
        h.recv(a2)
            .contains("<blocklist xmlns='urn:xmpp:blocking'></blocklist>")
    );
    h.send(a, "<iq type='set' id='blk'><block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></block></iq>");
    h.commit();
    assert!(h.recv(a).contains("id='blk'"));
    assert!(
        h.recv(a2)
            .contains("<block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></block>"),
        "push to the resource that asked for the list"
    );
    assert!(
        h.recv(b)
            .contains("type='unavailable' from='alice@localhost/"),
        "bob sees alice go"
    );
    h.send(
        b,
        "<message to='alice@localhost' type='chat' id='m1'><body>hi</body></message>",
    );
    let out = h.recv(b);
    assert!(
        out.contains("id='m1'") && out.contains("<service-unavailable "),
        "{out}"
    );
    assert_eq!(h.recv(a), "");
    h.send(
        a,
        "<message to='bob@localhost' type='chat' id='m2'><body>hi</body></message>",
    );
    let out = h.recv(a);
    assert!(
        out.contains("<not-acceptable ")
            && out.contains("<blocked xmlns='urn:xmpp:blocking:errors'/>"),
        "{out}"
    );
    // Presence updates no longer cross.
    h.send(b, "<presence><show>away</show></presence>");
    h.recv(b);
    assert_eq!(h.recv(a), "");
    h.send(
        a,
        "<iq type='set' id='ub'><unblock xmlns='urn:xmpp:blocking'/></iq>",
    );
    h.commit();
    assert!(h.recv(a).contains("id='ub'"));
    assert!(h.recv(a2).contains("<unblock xmlns='urn:xmpp:blocking'/>"));
    assert!(
        h.recv(b).contains("from='alice@localhost/"),
        "presence again after unblock"
    );
    h.send(
        b,
        "<message to='alice@localhost' type='chat' id='m3'><body>hi</body></message>",
    );
    assert!(h.recv(a).contains("id='m3'"));
}

fn preauth(h: &mut H) -> ConnId {
    let id = h.open();
    h.send(id, HEADER);
    let f = h.recv(id);
    assert!(
        f.contains("<register xmlns='urn:xmpp:ibr-token:0'/>"),
        "{f}"
    );
    assert!(f.contains("<register xmlns='http://jabber.org/features/iq-register'/>"));
    id
}

const REGISTER: &str = "<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>juliet</username><password>s3cret</password></query></iq>";

#[test]
fn invite_registration_works_once_per_token() {
    let mut h = H::new(false);
    h.core.configure_services(ServicesConfig {
        register_enabled: true,
        ..ServicesConfig::default()
    });
    let seq = h
        .core
        .admin_invite_add(
            "tok",
            crate::personal::Invite {
                account: None,
                expires_unix: 1000,
            },
        )
        .unwrap();
    assert!(seq > 0);
    h.commit();
    // Without a token: invitation only.
    let id = preauth(&mut h);
    h.send(
        id,
        "<iq type='get' id='f'><query xmlns='jabber:iq:register'/></iq>",
    );
    assert!(h.recv(id).contains("<username/><password/>"));
    h.send(id, REGISTER);
    assert!(h.recv(id).contains("<forbidden "));
    h.send(
        id,
        "<iq type='set' id='p'><preauth xmlns='urn:xmpp:pars:0' token='wrong'/></iq>",
    );
    assert!(h.recv(id).contains("<item-not-found "));
    h.send(
        id,
        "<iq type='set' id='p'><preauth xmlns='urn:xmpp:pars:0' token='tok'/></iq>",
    );
    assert!(h.recv(id).contains("type='result' id='p'"));
    h.send(id, REGISTER);
    assert_eq!(h.recv(id), "", "acknowledged once durable");
    h.commit();
    assert!(h.recv(id).contains("type='result' id='reg'"));
    assert!(h.core.db().user("juliet").is_some());
    // The token is used up.
    let id2 = preauth(&mut h);
    h.send(
        id2,
        "<iq type='set' id='p'><preauth xmlns='urn:xmpp:pars:0' token='tok'/></iq>",
    );
    assert!(h.recv(id2).contains("<item-not-found "));
    // Other iqs before login still end the stream.
    h.send(
        id2,
        "<iq type='get' id='x'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    assert!(h.recv(id2).contains("type='error'"));
    // The new account logs in (SASL on a new stream).
    let j = h.open();
    h.send(j, HEADER);
    h.recv(j);
    let auth = BASE64.encode("\0juliet\0s3cret");
    h.send(
        j,
        &format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{auth}</auth>"),
    );
    assert!(h.recv(j).contains("<success"));
}

#[test]
fn registration_is_off_by_default_and_expired_tokens_fail() {
    let mut h = H::new(false);
    let id = h.open();
    h.send(id, HEADER);
    assert!(!h.recv(id).contains("iq-register"));
    h.send(id, REGISTER);
    assert!(
        h.recv(id)
            .contains("<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>")
    );
    h.core.configure_services(ServicesConfig {
        register_enabled: true,
        register_open: true,
        start_unix_secs: 5000,
        ..ServicesConfig::default()
    });
    h.core
        .admin_invite_add(
            "old",
            crate::personal::Invite {
                account: None,
                expires_unix: 10,
            },
        )
        .unwrap();
    let id = preauth(&mut h);
    h.send(
        id,
        "<iq type='set' id='p'><preauth xmlns='urn:xmpp:pars:0' token='old'/></iq>",
    );
    assert!(h.recv(id).contains("<item-not-found "));
    // Open mode: no token needed, but an existing name is a conflict.
    h.send(id, &REGISTER.replace("juliet", "alice"));
    assert!(h.recv(id).contains("<conflict "));
    h.send(id, REGISTER);
    h.commit();
    assert!(h.recv(id).contains("type='result' id='reg'"));
}

#[test]
fn registration_attempts_are_rate_limited() {
    let limits = Limits {
        register_per_ip_per_hour: 2,
        ..Limits::default()
    };
    let mut h = H::with_limits(false, limits);
    h.core.configure_services(ServicesConfig {
        register_enabled: true,
        register_open: true,
        ..ServicesConfig::default()
    });
    let id = preauth(&mut h);
    for (i, want) in [(1, "result"), (2, "result"), (3, "<policy-violation ")] {
        h.send(id, &REGISTER.replace("juliet", &format!("user{i}")));
        h.commit();
        let out = h.recv(id);
        assert!(out.contains(want), "attempt {i}: {out}");
    }
}

#[test]
fn password_change_and_account_removal_from_the_client() {
    let mut h = H::new(false);
    let a = h.online("alice", "phone", 0);
    h.send(
        a,
        "<iq type='get' id='q'><query xmlns='jabber:iq:register'/></iq>",
    );
    assert!(
        h.recv(a)
            .contains("<registered/><username>alice</username>")
    );
    h.send(a, "<iq type='set' id='pw'><query xmlns='jabber:iq:register'><username>bob</username><password>x</password></query></iq>");
    assert!(h.recv(a).contains("<not-authorized "));
    let before = h.core.db().user("alice").map(|u| u.credentials.clone());
    h.send(a, "<iq type='set' id='pw'><query xmlns='jabber:iq:register'><username>alice</username><password>new</password></query></iq>");
    h.commit();
    assert!(h.recv(a).contains("type='result' id='pw'"));
    let after = h.core.db().user("alice").map(|u| u.credentials.clone());
    assert_ne!(before, after);
    assert!(after.is_some_and(|c| c.verify_password("new")));
    h.send(
        a,
        "<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>",
    );
    let (out, action) = h.recv_action(a);
    assert!(out.contains("type='result' id='rm'"), "{out}");
    assert_eq!(action, Some(Action::Close));
    assert!(h.core.db().user("alice").is_none());
}

#[test]
fn vcard_set_get_bound_and_avatar_conversion() {
    let limits = Limits {
        max_vcard_bytes: 2048,
        ..Limits::default()
    };
    let mut h = H::with_limits(false, limits);
    befriend(&mut h, "alice", "bob");
    let a = h.online("alice", "phone", 0);
    let b = h.online("bob", "pc", 0);
    h.send(
        b,
        "<iq type='get' id='v0' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>",
    );
    assert!(h.recv(b).contains("<vCard xmlns='vcard-temp'/>"));
    // "abc" as a PNG stand-in: SHA-1 a9993e36…
    h.send(a, "<iq type='set' id='v1'><vCard xmlns='vcard-temp'><FN>Alice</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>YWJj</BINVAL></PHOTO></vCard></iq>");
    h.commit();
    assert!(h.recv(a).contains("type='result' id='v1'"));
    h.send(
        b,
        "<iq type='get' id='v2' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>",
    );
    assert!(h.recv(b).contains("<FN>Alice</FN>"));
    // XEP-0398: the photo became the PEP avatar.
    h.send(b, &format!("<iq type='get' id='m' to='alice@localhost'><pubsub xmlns='{NS_PUBSUB}'><items node='urn:xmpp:avatar:metadata'/></pubsub></iq>"));
    let out = h.recv(b);
    assert!(
        out.contains("id='a9993e364706816aba3e25717850c26c9cd0d89d'") && out.contains("bytes='3'"),
        "{out}"
    );
    // XEP-0153: the hash is added to presence.
    h.send(a, "<presence/>");
    h.recv(a);
    assert!(h.recv(b).contains(
        "<x xmlns='vcard-temp:x:update'><photo>a9993e364706816aba3e25717850c26c9cd0d89d</photo></x>"
    ));
    // Too large.
    let big = "A".repeat(4096);
    h.send(
        a,
        &format!(
            "<iq type='set' id='v3'><vCard xmlns='vcard-temp'><DESC>{big}</DESC></vCard></iq>"
        ),
    );
    assert!(h.recv(a).contains("<not-acceptable "));
    // Someone else's vCard cannot be set.
    h.send(
        b,
        "<iq type='set' id='v4' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>",
    );
    assert!(h.recv(b).contains("<forbidden "));
}

#[test]
fn private_storage_and_bookmarks_stay_in_step() {
    let mut h = H::new(false);
    let a = h.online("alice", "phone", 0);
    h.send(a, "<iq type='set' id='p1'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'><theme>dark</theme></prefs></query></iq>");
    h.commit();
    assert!(h.recv(a).contains("id='p1'"));
    h.send(a, "<iq type='get' id='p2'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query></iq>");
    assert!(h.recv(a).contains("<theme>dark</theme>"));
    h.send(a, "<iq type='get' id='p3'><query xmlns='jabber:iq:private'><x xmlns='jabber:x:data'/></query></iq>");
    assert!(h.recv(a).contains("<not-acceptable "));
    // XEP-0048 write → XEP-0402 items.
    h.send(a, "<iq type='set' id='b1'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'><conference jid='room@muc.localhost' name='Room' autojoin='true'><nick>al</nick></conference></storage></query></iq>");
    h.commit();
    assert!(h.recv(a).contains("id='b1'"));
    h.send(a, &format!("<iq type='get' id='b2'><pubsub xmlns='{NS_PUBSUB}'><items node='urn:xmpp:bookmarks:1'/></pubsub></iq>"));
    let out = h.recv(a);
    assert!(out.contains("<item id='room@muc.localhost'><conference xmlns='urn:xmpp:bookmarks:1' autojoin='true' name='Room'><nick>al</nick></conference>"), "{out}");
    // XEP-0402 publish → XEP-0048 view.
    h.send(
        a,
        &publish(
            "urn:xmpp:bookmarks:1",
            "other@muc.localhost",
            "<conference xmlns='urn:xmpp:bookmarks:1' name='Other'/>",
            &(field("pubsub#persist_items", "true")
                + &field("pubsub#max_items", "max")
                + &field("pubsub#send_last_published_item", "never")
                + &field("pubsub#access_model", "whitelist")),
        ),
    );
    h.commit();
    assert!(
        h.recv(a)
            .contains("type='result' id='pub-other@muc.localhost'")
    );
    h.send(a, "<iq type='get' id='b3'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>");
    let out = h.recv(a);
    assert!(
        out.contains("<conference jid='room@muc.localhost'")
            && out.contains("<conference jid='other@muc.localhost'"),
        "{out}"
    );
    // Removing one in the legacy view retracts it.
    h.send(a, "<iq type='set' id='b4'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'><conference jid='other@muc.localhost' name='Other' autojoin='false'/></storage></query></iq>");
    h.commit();
    h.recv(a);
    let items = h
        .core
        .db()
        .user("alice")
        .map(|u| u.personal.nodes["urn:xmpp:bookmarks:1"].items.len());
    assert_eq!(items, Some(1));
}

#[test]
fn disco_shows_pep_identity_and_contact_addresses() {
    let mut h = H::new(false);
    h.core.configure_services(ServicesConfig {
        contact: vec![("admin-addresses", vec!["xmpp:admin@localhost".into()])],
        ..ServicesConfig::default()
    });
    let a = h.online("alice", "phone", 0);
    h.send(a, "<iq type='get' id='d1' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    let out = h.recv(a);
    assert!(
        out.contains("<identity category='pubsub' type='pep'/>"),
        "{out}"
    );
    assert!(out.contains("http://jabber.org/protocol/pubsub#publish-options"));
    assert!(out.contains("urn:xmpp:bookmarks:1#compat"));
    h.send(a, "<iq type='get' id='d2' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    let out = h.recv(a);
    assert!(
        out.contains("<value>http://jabber.org/network/serverinfo</value>")
            && out.contains(
                "<field var='admin-addresses' type='list-multi'><value>xmpp:admin@localhost</value>"
            ),
        "{out}"
    );
    assert!(out.contains("var='urn:xmpp:blocking'") && out.contains("var='vcard-temp'"));
    h.send(a, &publish("urn:n", "1", "<n xmlns='urn:n'/>", ""));
    h.commit();
    h.recv(a);
    h.send(a, "<iq type='get' id='d3' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>");
    assert!(
        h.recv(a)
            .contains("<item jid='alice@localhost' node='urn:n'/>")
    );
}

#[test]
fn personal_data_is_bounded() {
    let limits = Limits {
        max_personal_bytes: 16384,
        max_pep_nodes: 8,
        ..Limits::default()
    };
    let mut h = H::with_limits(false, limits);
    let a = h.online("alice", "phone", 0);
    let big = "x".repeat(6000);
    let mut refused = false;
    for i in 0..4 {
        h.send(
            a,
            &publish(
                &format!("urn:n{i}"),
                "1",
                &format!("<n xmlns='urn:n'>{big}</n>"),
                "",
            ),
        );
        h.commit();
        let out = h.recv(a);
        if out.contains("<resource-constraint ") {
            refused = true;
        }
    }
    assert!(refused, "the byte bound stops the third node");
    let bytes = h
        .core
        .db()
        .user("alice")
        .map(|u| u.personal.footprint())
        .unwrap_or(0);
    assert!(bytes <= 16384, "{bytes}");
    for i in 10..20 {
        h.send(
            a,
            &publish(&format!("urn:m{i}"), "1", "<n xmlns='urn:n'/>", ""),
        );
    }
    h.commit();
    let nodes = h
        .core
        .db()
        .user("alice")
        .map(|u| u.personal.nodes.len())
        .unwrap_or(0);
    assert!(nodes <= 8, "{nodes}");
}
