//! XEP-0115 Entity Capabilities 1.6, as a consumer: learning which PEP nodes a client
//! wants notifications for (XEP-0163 §4.3, "filtered notifications": features named
//! `NODE+notify`).
//!
//! A client's available presence carries `<c hash='sha-1' node='…' ver='…'/>`. A known
//! `ver` is looked up in a bounded cache; an unknown one is asked for with disco#info
//! (`node#ver`) sent to that client, and the answer is checked against the hash (§5.4)
//! before it is cached for every client of the same version; an unverifiable answer is
//! used for that session only. Once a session's interests are known, the PEP module
//! sends it the last items it missed (XEP-0163 §4.3.2).

use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::data_forms::{self, NS_DATA};
use super::hooks::Hooks;
use super::pending_iq::{Awaiting, ID_PREFIX};
use super::{Module, xep0030_disco::NS_DISCO_INFO};
use crate::core::Core;
use crate::jid::Jid;
use crate::limits::{CAP_CAPS_CACHE, CAP_NOTIFY_BYTES, CAP_NOTIFY_NODES, CAP_PEP_NAME_BYTES};
use crate::router::ConnId;
use crate::xml::escape::escape_attr;
use crate::xml::{Element, NS_CLIENT, RawElement};

pub const NS_CAPS: &str = "http://jabber.org/protocol/caps";

pub static MODULE: Module = Module {
    name: "caps",
    spec: "XEP-0115 1.6 (consumer: +notify interests for PEP)",
    server_features: &[],
    account_features: &[],
    stream_features: &[],
    iq: &[],
};

pub static HOOKS: Hooks = Hooks {
    name: "caps",
    available_presence: Some(on_available_presence),
    iq_response: Some(on_iq_response),
    ..Hooks::NONE
};

/// Client versions seen, with the nodes they want notifications for; least recently
/// used first out.
#[derive(Default)]
pub struct CapsCache {
    entries: Vec<(String, Arc<Vec<String>>, u64)>,
    clock: u64,
}

impl CapsCache {
    pub fn get(&mut self, ver: &str) -> Option<Arc<Vec<String>>> {
        self.clock += 1;
        let clock = self.clock;
        let e = self.entries.iter_mut().find(|(v, _, _)| v == ver)?;
        e.2 = clock;
        Some(e.1.clone())
    }

    pub fn insert(&mut self, ver: String, notify: Arc<Vec<String>>) {
        self.clock += 1;
        if let Some(e) = self.entries.iter_mut().find(|(v, _, _)| *v == ver) {
            e.1 = notify;
            e.2 = self.clock;
            return;
        }
        if self.entries.len() >= CAP_CAPS_CACHE
            && let Some(oldest) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.2)
                .map(|(i, _)| i)
        {
            self.entries.swap_remove(oldest);
        }
        self.entries.push((ver, notify, self.clock));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

use crate::limits::{MAX_CAPS_NODE_BYTES, MAX_CAPS_VER_BYTES};

/// The `<c/>` of a presence: `(hash, node, ver)`.
fn caps_of(presence: &Element) -> Option<(Option<String>, String, String)> {
    let c = presence.child("c", NS_CAPS)?;
    let node = c.attr("node").filter(|n| n.len() <= MAX_CAPS_NODE_BYTES)?;
    let ver = c.attr("ver").filter(|v| v.len() <= MAX_CAPS_VER_BYTES)?;
    Some((
        c.attr("hash").map(str::to_string),
        node.to_string(),
        ver.to_string(),
    ))
}

type Caps<'a> = (Option<Cow<'a, str>>, Cow<'a, str>, Cow<'a, str>);

/// [`caps_of`] a framed presence: read from its bytes (every available presence of a
/// session comes here, usually with the same `<c/>`), from its tree when the bytes do
/// not tell for sure.
fn caps_in(raw: &RawElement) -> Option<Caps<'_>> {
    match caps_in_bytes(raw) {
        Some(caps) => caps,
        None => {
            let (hash, node, ver) = caps_of(&Element::parse(raw, NS_CLIENT).ok()?)?;
            Some((hash.map(Cow::Owned), Cow::Owned(node), Cow::Owned(ver)))
        }
    }
}

/// `None` when a child before the `<c/>` has a namespace the bytes do not tell.
fn caps_in_bytes(raw: &RawElement) -> Option<Option<Caps<'_>>> {
    for child in raw.children() {
        if (child.ns?, child.name) != (NS_CAPS, "c") {
            continue;
        }
        let node = child
            .attr("node")
            .filter(|n| n.len() <= MAX_CAPS_NODE_BYTES);
        let ver = child.attr("ver").filter(|v| v.len() <= MAX_CAPS_VER_BYTES);
        return Some(
            node.zip(ver)
                .map(|(node, ver)| (child.attr("hash"), node, ver)),
        );
    }
    Some(None)
}

fn on_available_presence(
    core: &mut Core,
    conn: ConnId,
    from: &Jid,
    raw: &RawElement,
    initial: bool,
) {
    let Some((hash, node, ver)) = caps_in(raw) else {
        // No capabilities: no known interests (XEP-0163 §4.3.1 sends filtered
        // notifications only to entities that advertised them).
        if let Some(ext) = core.ext.conn_mut(conn) {
            ext.notify = None;
            ext.caps_ver = None;
        }
        return;
    };
    let changed = core
        .ext
        .conn(conn)
        .is_none_or(|e| e.caps_ver.as_deref() != Some(&*ver));
    if !changed && !initial {
        return;
    }
    let ver = ver.into_owned();
    if let Some(ext) = core.ext.conn_mut(conn) {
        ext.caps_ver = Some(ver.clone());
    }
    let hashed = hash.as_deref() == Some("sha-1");
    if hashed && let Some(notify) = core.ext.caps.get(&ver) {
        if let Some(ext) = core.ext.conn_mut(conn) {
            ext.notify = Some(notify);
        }
        super::xep0163_pep::send_last_items_to_session(core, conn);
        return;
    }
    let what = Awaiting::CapsInfo {
        ver: ver.clone(),
        hashed,
    };
    if core.ext.pending.is_waiting(conn, &what) {
        return;
    }
    let id = format!("{ID_PREFIX}{}", core.ext.next_counter());
    let to = from.to_string();
    let domain = core.cfg.domain.clone();
    let query_node = format!("{node}#{ver}");
    core.send(conn, |out| {
        out.extend_from_slice(b"<iq type='get' id='");
        escape_attr(out, &id);
        out.extend_from_slice(b"' from='");
        escape_attr(out, &domain);
        out.extend_from_slice(b"' to='");
        escape_attr(out, &to);
        out.extend_from_slice(b"'><query xmlns='http://jabber.org/protocol/disco#info' node='");
        escape_attr(out, &query_node);
        out.extend_from_slice(b"'/></iq>");
    });
    let now = core.now;
    core.ext.pending.add(id, conn, to, now, what);
}

fn on_iq_response(core: &mut Core, conn: ConnId, from: &Jid, raw: &RawElement) -> bool {
    let Some(id) = raw.attr("id").filter(|i| i.starts_with(ID_PREFIX)) else {
        return false;
    };
    let now = core.now;
    let Some((asked, Awaiting::CapsInfo { ver, hashed })) =
        core.ext.pending.take(id, from.as_str(), now)
    else {
        return false;
    };
    if asked != conn {
        return true;
    }
    let query = match raw.attr("type") {
        Some("result") => Element::parse(raw, NS_CLIENT)
            .ok()
            .and_then(|iq| iq.child("query", NS_DISCO_INFO).cloned()),
        _ => None,
    };
    let Some(query) = query else {
        return true;
    };
    let notify = Arc::new(notify_nodes(&query));
    if hashed && verification_hash(&query).as_deref() == Some(ver.as_str()) {
        core.ext.caps.insert(ver, notify.clone());
    } else {
        log::debug!("[{conn}] capabilities of {from} do not match their hash; not cached");
    }
    if let Some(ext) = core.ext.conn_mut(conn) {
        ext.notify = Some(notify);
    }
    super::xep0163_pep::send_last_items_to_session(core, conn);
    true
}

/// The nodes of `NODE+notify` features (XEP-0163 §4.3.1), bounded.
fn notify_nodes(query: &Element) -> Vec<String> {
    let mut budget = CAP_NOTIFY_BYTES;
    let mut nodes: Vec<String> = query
        .elements()
        .filter(|f| f.name == "feature" && f.ns == NS_DISCO_INFO)
        .filter_map(|f| f.attr("var")?.strip_suffix("+notify"))
        .filter(|n| !n.is_empty() && n.len() <= CAP_PEP_NAME_BYTES)
        .take_while(|n| {
            budget = budget.saturating_sub(n.len());
            budget > 0
        })
        .map(str::to_string)
        .take(CAP_NOTIFY_NODES)
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes
}

/// XEP-0115 §5.1: the verification string of a disco#info result, hashed with SHA-1
/// and base64-encoded. `None` when §5.4 says the result is ill-formed (duplicate
/// identities or features, several forms of one FORM_TYPE).
pub fn verification_hash(query: &Element) -> Option<String> {
    let mut identities: Vec<String> = query
        .elements()
        .filter(|e| e.name == "identity" && e.ns == NS_DISCO_INFO)
        .map(|e| {
            let lang = e
                .attrs
                .iter()
                .find(|(n, _)| n == "xml:lang")
                .map_or("", |(_, v)| v.as_str());
            format!(
                "{}/{}/{}/{}",
                e.attr("category").unwrap_or(""),
                e.attr("type").unwrap_or(""),
                lang,
                e.attr("name").unwrap_or("")
            )
        })
        .collect();
    let mut features: Vec<&str> = query
        .elements()
        .filter(|e| e.name == "feature" && e.ns == NS_DISCO_INFO)
        .filter_map(|e| e.attr("var"))
        .collect();
    identities.sort_unstable();
    features.sort_unstable();
    let dup = |v: &[&str]| v.windows(2).any(|w| w.first() == w.get(1));
    let ids: Vec<&str> = identities.iter().map(String::as_str).collect();
    if dup(&ids) || dup(&features) {
        return None;
    }
    let mut s = String::new();
    for i in &identities {
        s.push_str(i);
        s.push('<');
    }
    for f in &features {
        s.push_str(f);
        s.push('<');
    }
    type Fields = Vec<(String, Vec<String>)>;
    let mut forms: Vec<(String, Fields)> = Vec::new();
    for x in query
        .elements()
        .filter(|e| e.name == "x" && e.ns == NS_DATA)
    {
        // §5.4: a form whose FORM_TYPE is not hidden is ignored.
        let hidden = x.elements().any(|f| {
            f.name == "field"
                && f.attr("var") == Some("FORM_TYPE")
                && f.attr("type") == Some("hidden")
        });
        if !hidden {
            continue;
        }
        let mut fields = data_forms::fields(x);
        let Some(pos) = fields.iter().position(|(v, _)| v == "FORM_TYPE") else {
            continue;
        };
        let (_, ft) = fields.remove(pos);
        let Some(ft) = ft.into_iter().next() else {
            continue;
        };
        for (_, values) in &mut fields {
            values.sort_unstable();
        }
        fields.sort_unstable();
        forms.push((ft, fields));
    }
    forms.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if forms
        .windows(2)
        .any(|w| w.first().map(|f| &f.0) == w.get(1).map(|f| &f.0))
    {
        return None;
    }
    for (ft, fields) in forms {
        s.push_str(&ft);
        s.push('<');
        for (var, values) in fields {
            s.push_str(&var);
            s.push('<');
            for v in values {
                s.push_str(&v);
                s.push('<');
            }
        }
    }
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, s.as_bytes());
    Some(BASE64.encode(digest.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Element {
        let raw = RawElement::from_xml(xml, NS_CLIENT).unwrap();
        Element::parse(&raw, NS_CLIENT).unwrap()
    }

    #[test]
    fn caps_read_from_the_bytes_are_what_the_tree_says() {
        let long = "v".repeat(MAX_CAPS_VER_BYTES + 1);
        for xml in [
            "<presence/>".to_string(),
            "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v='/></presence>".into(),
            "<presence><c xmlns='http://jabber.org/protocol/caps' node='a&amp;b' ver='v'/></presence>".into(),
            "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' ver='v'/></presence>".into(),
            format!("<presence><c xmlns='http://jabber.org/protocol/caps' node='n' ver='{long}'/></presence>"),
            "<presence><c xmlns='urn:other' node='n' ver='v'/><c xmlns='http://jabber.org/protocol/caps' node='m' ver='w'/></presence>".into(),
            "<presence xmlns:k='http://jabber.org/protocol/caps'><k:c node='n' ver='v'/></presence>".into(),
        ] {
            let raw = RawElement::from_xml(&xml, NS_CLIENT).unwrap();
            let from_bytes = caps_in(&raw).map(|(h, n, v)| {
                (h.map(Cow::into_owned), n.into_owned(), v.into_owned())
            });
            assert_eq!(from_bytes, caps_of(&parse(&xml)), "{xml}");
            assert!(caps_in_bytes(&raw).is_some(), "read from the bytes: {xml}");
        }
    }

    #[test]
    fn simple_example_of_section_5_2() {
        let q = parse(
            "<query xmlns='http://jabber.org/protocol/disco#info' node='http://code.google.com/p/exodus#QgayPKawpkPSDYmwT/WM94uAlu0='>\
             <identity category='client' name='Exodus 0.9.1' type='pc'/>\
             <feature var='http://jabber.org/protocol/caps'/>\
             <feature var='http://jabber.org/protocol/disco#info'/>\
             <feature var='http://jabber.org/protocol/disco#items'/>\
             <feature var='http://jabber.org/protocol/muc'/></query>",
        );
        assert_eq!(
            verification_hash(&q).as_deref(),
            Some("QgayPKawpkPSDYmwT/WM94uAlu0=")
        );
    }

    #[test]
    fn complex_example_of_section_5_3() {
        let q = parse(
            "<query xmlns='http://jabber.org/protocol/disco#info' node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='>\
             <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>\
             <identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>\
             <feature var='http://jabber.org/protocol/caps'/>\
             <feature var='http://jabber.org/protocol/disco#info'/>\
             <feature var='http://jabber.org/protocol/disco#items'/>\
             <feature var='http://jabber.org/protocol/muc'/>\
             <x xmlns='jabber:x:data' type='result'>\
               <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>\
               <field var='ip_version'><value>ipv4</value><value>ipv6</value></field>\
               <field var='os'><value>Mac</value></field>\
               <field var='os_version'><value>10.5.1</value></field>\
               <field var='software'><value>Psi</value></field>\
               <field var='software_version'><value>0.11</value></field>\
             </x></query>",
        );
        assert_eq!(
            verification_hash(&q).as_deref(),
            Some("q07IKJEyjvHSyhy//CH0CxmKi8w=")
        );
    }

    #[test]
    fn duplicates_are_ill_formed_and_notify_nodes_are_extracted() {
        let q = parse(
            "<query xmlns='http://jabber.org/protocol/disco#info'>\
             <feature var='urn:xmpp:avatar:metadata+notify'/>\
             <feature var='urn:xmpp:avatar:metadata+notify'/>\
             <feature var='eu.siacs.conversations.axolotl.devicelist+notify'/>\
             <feature var='+notify'/></query>",
        );
        assert_eq!(verification_hash(&q), None);
        assert_eq!(
            notify_nodes(&q),
            [
                "eu.siacs.conversations.axolotl.devicelist",
                "urn:xmpp:avatar:metadata"
            ]
        );
    }

    #[test]
    fn cache_is_bounded_lru() {
        let mut c = CapsCache::default();
        for i in 0..CAP_CAPS_CACHE {
            c.insert(i.to_string(), Arc::new(vec![]));
        }
        assert!(c.get("0").is_some());
        c.insert("new".into(), Arc::new(vec!["n".into()]));
        assert_eq!(c.len(), CAP_CAPS_CACHE);
        assert!(c.get("0").is_some(), "recently used stays");
        assert!(c.get("1").is_none(), "least recently used went");
        assert_eq!(c.get("new").map(|n| n.len()), Some(1));
    }
}
