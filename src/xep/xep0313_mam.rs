//! XEP-0313 Message Archive Management 1.1 (`urn:xmpp:mam:2`, with `#extended`) for
//! accounts, with XEP-0059 Result Set Management paging and XEP-0359 stanza-ids.
//!
//! Chat and normal messages with a body are archived for both parties as they pass the
//! router (unless a hint or the account's preferences say no). Queries are validated here
//! and answered by the archive store in the shell, which reads its segment files; the
//! answer comes back through [`Core::archive_answer`].

use super::{IqReply, IqRequest, IqRoute, IqTarget, Module, Targets};
use crate::archive::{ArchivePage, ArchiveQuery, format_id, parse_id};
use crate::core::Core;
use crate::db::{MamDefault, MamPrefs, Record};
use crate::error::{StanzaCondition, StanzaError};
use crate::jid::Jid;
use crate::message::{MessageInfo, NS_MAM};
use crate::router::ConnId;
use crate::stanza::MessageType;
use crate::xml::Element;
use crate::xml::escape::{escape_attr, escape_text};

pub const NS_RSM: &str = "http://jabber.org/protocol/rsm";
pub const NS_DATA: &str = "jabber:x:data";

pub static MODULE: Module = Module {
    name: "message archive",
    spec: "XEP-0313 1.1 (urn:xmpp:mam:2, #extended), XEP-0059, XEP-0359",
    server_features: &[],
    account_features: &[NS_MAM, "urn:xmpp:mam:2#extended", "urn:xmpp:sid:0"],
    stream_features: &[],
    iq: &[
        IqRoute {
            element: "query",
            ns: NS_MAM,
            targets: Targets::OWN,
            get: Some(query_form),
            set: Some(query),
        },
        IqRoute {
            element: "prefs",
            ns: NS_MAM,
            targets: Targets::OWN,
            get: Some(prefs_get),
            set: Some(prefs_set),
        },
    ],
};

pub use crate::limits::{
    MAM_DEFAULT_PAGE as DEFAULT_PAGE, MAM_MAX_PAGE as MAX_PAGE,
    MAM_MAX_PREFS_JIDS as MAX_PREFS_JIDS, MAM_MAX_QUERIES as MAX_QUERIES,
    MAM_MAX_QUERIES_PER_CONNECTION as MAX_QUERIES_PER_CONNECTION,
};

/// A query whose answer the store will hand back.
pub struct PendingQuery {
    pub conn: ConnId,
    pub iq_id: String,
    pub queryid: Option<String>,
    /// The asking resource's full JID.
    pub to: String,
}

/// Whether a message is archived at all (XEP-0313 §7: messages with a body;
/// XEP-0334 `no-store`/`no-permanent-store` keep it out).
pub fn archivable(mtype: MessageType, info: &MessageInfo) -> bool {
    if info.no_store || info.no_permanent_store || info.carbon || info.mam_result {
        return false;
    }
    matches!(mtype, MessageType::Chat | MessageType::Normal) && (info.has_body || info.store)
}

fn bad(text: &'static str) -> IqReply {
    IqReply::Error(StanzaError::new(StanzaCondition::BadRequest).with_text(text))
}

fn field_values(form: &Element, var: &str) -> Vec<String> {
    form.elements()
        .filter(|f| f.name == "field" && f.attr("var") == Some(var))
        .flat_map(|f| {
            f.elements()
                .filter(|v| v.name == "value")
                .map(|v| v.text().trim().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|v| !v.is_empty())
        .collect()
}

/// Builds the store query from the iq (§4.1 form fields, §4.2 RSM).
fn parse_query(account: &str, payload: &Element) -> Result<ArchiveQuery, IqReply> {
    let mut q = ArchiveQuery {
        account: account.to_string(),
        max: DEFAULT_PAGE,
        ..ArchiveQuery::default()
    };
    if let Some(form) = payload.child("x", NS_DATA) {
        if let Some(t) = field_values(form, "FORM_TYPE").first()
            && t != NS_MAM
        {
            return Err(bad("unknown FORM_TYPE"));
        }
        for field in form.elements().filter(|f| f.name == "field") {
            match field.attr("var") {
                Some("FORM_TYPE" | "with" | "start" | "end" | "before-id" | "after-id" | "ids") => {
                }
                // §4.1.1: fields the server does not know are an error, not ignored.
                _ => {
                    return Err(IqReply::Error(StanzaError::new(
                        StanzaCondition::FeatureNotImplemented,
                    )));
                }
            }
        }
        if let Some(w) = field_values(form, "with").first() {
            let jid = Jid::parse(w)
                .map_err(|_| IqReply::Error(StanzaError::new(StanzaCondition::JidMalformed)))?;
            q.with = Some(jid.bare_str().to_string());
        }
        if let Some(s) = field_values(form, "start").first() {
            q.start =
                Some(crate::datetime::parse_ms(s).ok_or_else(|| bad("start is not a date-time"))?);
        }
        if let Some(e) = field_values(form, "end").first() {
            q.end =
                Some(crate::datetime::parse_ms(e).ok_or_else(|| bad("end is not a date-time"))?);
        }
        if let Some(b) = field_values(form, "before-id").first() {
            q.before_id = Some(parse_id(b).ok_or_else(item_not_found)?);
        }
        if let Some(a) = field_values(form, "after-id").first() {
            q.after_id = Some(parse_id(a).ok_or_else(item_not_found)?);
        }
        for id in field_values(form, "ids") {
            q.ids.push(parse_id(&id).ok_or_else(item_not_found)?);
            if q.ids.len() > MAX_PAGE {
                return Err(bad("too many ids"));
            }
        }
    }
    if let Some(set) = payload.child("set", NS_RSM) {
        if let Some(m) = set.child("max", NS_RSM) {
            q.max = m
                .text()
                .trim()
                .parse::<usize>()
                .map_err(|_| bad("max is not a number"))?
                .min(MAX_PAGE);
        }
        if let Some(a) = set.child("after", NS_RSM) {
            q.after_id = Some(parse_id(a.text().trim()).ok_or_else(item_not_found)?);
        }
        if let Some(b) = set.child("before", NS_RSM) {
            let t = b.text();
            if t.trim().is_empty() {
                q.last_page = true;
            } else {
                q.before_id = Some(parse_id(t.trim()).ok_or_else(item_not_found)?);
            }
        }
    }
    Ok(q)
}

fn item_not_found() -> IqReply {
    IqReply::Error(StanzaError::new(StanzaCondition::ItemNotFound))
}

fn query(core: &mut Core, req: &IqRequest) -> IqReply {
    if req.target != IqTarget::OwnAccount {
        return IqReply::Error(StanzaError::new(StanzaCondition::Forbidden));
    }
    let Some(account) = req.from.local() else {
        return bad("no account");
    };
    let q = match parse_query(account, &req.payload) {
        Ok(q) => q,
        Err(reply) => return reply,
    };
    let mine = core
        .pending_queries
        .values()
        .filter(|p| p.conn == req.conn)
        .count();
    if mine >= MAX_QUERIES_PER_CONNECTION || core.pending_queries.len() >= MAX_QUERIES {
        return IqReply::Error(StanzaError::new(StanzaCondition::ResourceConstraint));
    }
    let token = core.queue_archive_request(q);
    core.pending_queries.insert(
        token,
        PendingQuery {
            conn: req.conn,
            iq_id: req.id.clone(),
            queryid: req.payload.attr("queryid").map(str::to_string),
            to: req.from.to_string(),
        },
    );
    IqReply::Done
}

/// §5.1: the fields the query form understands.
fn query_form(_core: &mut Core, _req: &IqRequest) -> IqReply {
    let field = |var: &str, kind: &str| {
        Element::new("field", NS_DATA)
            .with_attr("var", var)
            .with_attr("type", kind)
    };
    let form = Element::new("x", NS_DATA)
        .with_attr("type", "form")
        .with_child(
            field("FORM_TYPE", "hidden")
                .with_child(Element::new("value", NS_DATA).with_text(NS_MAM)),
        )
        .with_child(field("with", "jid-single"))
        .with_child(field("start", "text-single"))
        .with_child(field("end", "text-single"))
        .with_child(field("before-id", "text-single"))
        .with_child(field("after-id", "text-single"))
        .with_child(field("ids", "text-multi"));
    IqReply::Result(Some(Element::new("query", NS_MAM).with_child(form)))
}

fn prefs_element(p: &MamPrefs) -> Element {
    let list = |name: &str, jids: &[String]| {
        jids.iter().fold(Element::new(name, NS_MAM), |e, j| {
            e.with_child(Element::new("jid", NS_MAM).with_text(j))
        })
    };
    Element::new("prefs", NS_MAM)
        .with_attr("default", p.default.as_str())
        .with_child(list("always", &p.always))
        .with_child(list("never", &p.never))
}

fn prefs_get(core: &mut Core, req: &IqRequest) -> IqReply {
    let prefs = req
        .from
        .local()
        .and_then(|u| core.db.user(u))
        .map(|u| u.mam.clone())
        .unwrap_or_default();
    IqReply::Result(Some(prefs_element(&prefs)))
}

fn prefs_set(core: &mut Core, req: &IqRequest) -> IqReply {
    let Some(user) = req.from.local().map(str::to_string) else {
        return bad("no account");
    };
    let Some(default) = req.payload.attr("default").and_then(MamDefault::parse) else {
        return bad("default must be always, never or roster");
    };
    let jids = |name: &str| -> Result<Vec<String>, IqReply> {
        let mut v = Vec::new();
        if let Some(list) = req.payload.child(name, NS_MAM) {
            for j in list.elements().filter(|e| e.name == "jid") {
                let jid = Jid::parse(j.text().trim())
                    .map_err(|_| IqReply::Error(StanzaError::new(StanzaCondition::JidMalformed)))?;
                v.push(jid.bare_str().to_string());
                if v.len() > MAX_PREFS_JIDS {
                    return Err(IqReply::Error(StanzaError::new(
                        StanzaCondition::NotAcceptable,
                    )));
                }
            }
        }
        Ok(v)
    };
    let prefs = match (jids("always"), jids("never")) {
        (Ok(always), Ok(never)) => MamPrefs {
            default,
            always,
            never,
        },
        (Err(e), _) | (_, Err(e)) => return e,
    };
    core.persist(Record::MamPrefs {
        user,
        prefs: prefs.clone(),
    });
    IqReply::Result(Some(prefs_element(&prefs)))
}

impl Core {
    /// Whether `account`'s preferences archive its conversation with `with` (bare).
    pub(crate) fn mam_wants(&self, account: &str, with: &str) -> bool {
        let Some(u) = self.db.user(account) else {
            return false;
        };
        let p = &u.mam;
        if p.never.iter().any(|j| j == with) {
            return false;
        }
        if p.always.iter().any(|j| j == with) {
            return true;
        }
        match p.default {
            MamDefault::Always => true,
            MamDefault::Never => false,
            MamDefault::Roster => u.roster.contains_key(with),
        }
    }

    /// Archives a message in `account`'s archive; returns its id (the stanza-id).
    pub(crate) fn mam_archive(
        &mut self,
        account: &str,
        with: &str,
        outgoing: bool,
        stanza: &str,
    ) -> u64 {
        use crate::archive::{ArchiveRecord, flags};
        let msg = self.new_archived_message(
            account,
            with,
            flags::ARCHIVED | if outgoing { flags::OUTGOING } else { 0 },
            stanza.to_string(),
        );
        let id = msg.id;
        self.archive_write(ArchiveRecord::Message(msg), None, false);
        id
    }

    /// The store's answer to a query: result messages, then the iq result with `<fin/>`
    /// (§4.3), or an error if the store could not read.
    pub fn archive_answer(&mut self, token: u64, page: Result<ArchivePage, ()>) {
        let Some(p) = self.pending_queries.remove(&token) else {
            return;
        };
        if self
            .conns
            .get(p.conn)
            .and_then(|c| c.session.as_ref())
            .is_none()
        {
            return;
        }
        let page = match page {
            Ok(page) => page,
            Err(()) => {
                let err = StanzaError::new(StanzaCondition::InternalServerError);
                let to = p.to.clone();
                return self.send(p.conn, |out| {
                    crate::stanza::write_error_reply(
                        out,
                        crate::stanza::Kind::Iq,
                        Some(&p.iq_id),
                        "",
                        &to,
                        &err,
                    )
                });
            }
        };
        for m in &page.messages {
            let fwd = super::xep0280_carbons::as_forwarded(m.stanza.as_bytes());
            let stamp = crate::datetime::format_ms(m.ts_ms);
            let id = format_id(m.id);
            self.send(p.conn, |out| {
                out.extend_from_slice(b"<message to='");
                escape_attr(out, &p.to);
                out.extend_from_slice(b"'><result xmlns='urn:xmpp:mam:2'");
                if let Some(q) = &p.queryid {
                    out.extend_from_slice(b" queryid='");
                    escape_attr(out, q);
                    out.push(b'\'');
                }
                out.extend_from_slice(b" id='");
                out.extend_from_slice(id.as_bytes());
                out.extend_from_slice(b"'><forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='");
                out.extend_from_slice(stamp.as_bytes());
                out.extend_from_slice(b"'/>");
                out.extend_from_slice(&fwd);
                out.extend_from_slice(b"</forwarded></result></message>");
            });
        }
        let first = page.messages.first().map(|m| format_id(m.id));
        let last = page.messages.last().map(|m| format_id(m.id));
        let complete = page.complete;
        self.send(p.conn, |out| {
            out.extend_from_slice(b"<iq type='result' id='");
            escape_attr(out, &p.iq_id);
            out.extend_from_slice(b"' to='");
            escape_attr(out, &p.to);
            out.extend_from_slice(b"'><fin xmlns='urn:xmpp:mam:2'");
            if complete {
                out.extend_from_slice(b" complete='true'");
            }
            out.extend_from_slice(b"><set xmlns='http://jabber.org/protocol/rsm'>");
            if let (Some(f), Some(l)) = (&first, &last) {
                out.extend_from_slice(b"<first");
                if let Some(i) = page.first_index {
                    out.extend_from_slice(format!(" index='{i}'").as_bytes());
                }
                out.push(b'>');
                escape_text(out, f);
                out.extend_from_slice(b"</first><last>");
                escape_text(out, l);
                out.extend_from_slice(b"</last>");
            }
            if let Some(c) = page.count {
                out.extend_from_slice(format!("<count>{c}</count>").as_bytes());
            }
            out.extend_from_slice(b"</set></fin></iq>");
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{NS_CLIENT, RawElement};

    fn payload(xml: &str) -> Element {
        let raw = RawElement::from_xml(xml, NS_CLIENT).expect("xml");
        Element::parse(&raw, NS_CLIENT).expect("tree")
    }

    #[test]
    fn queries_parse_form_and_rsm() {
        let p = payload(
            "<query xmlns='urn:xmpp:mam:2' queryid='q1'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>\
             <field var='with'><value>Bob@LocalHost/phone</value></field>\
             <field var='start'><value>1970-01-01T00:00:01Z</value></field></x>\
             <set xmlns='http://jabber.org/protocol/rsm'><max>500</max><after>a</after></set></query>",
        );
        let q = parse_query("alice", &p).ok().expect("valid");
        assert_eq!(q.with.as_deref(), Some("bob@localhost"));
        assert_eq!(q.start, Some(1000));
        assert_eq!(q.max, MAX_PAGE);
        assert_eq!(q.after_id, Some(10));
        let last = payload(
            "<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>5</max><before/></set></query>",
        );
        let q = parse_query("alice", &last).ok().expect("valid");
        assert!(q.last_page && q.max == 5);
        let unknown = payload(
            "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='colour'><value>red</value></field></x></query>",
        );
        assert!(parse_query("alice", &unknown).is_err());
        let bad_date = payload(
            "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='start'><value>yesterday</value></field></x></query>",
        );
        assert!(parse_query("alice", &bad_date).is_err());
    }

    #[test]
    fn only_conversation_messages_are_archived() {
        let body = MessageInfo {
            has_body: true,
            ..MessageInfo::default()
        };
        assert!(archivable(MessageType::Chat, &body));
        assert!(
            !archivable(MessageType::Chat, &MessageInfo::default()),
            "a bare chat state"
        );
        assert!(!archivable(MessageType::Headline, &body));
        assert!(!archivable(
            MessageType::Chat,
            &MessageInfo {
                no_store: true,
                ..body
            }
        ));
        assert!(archivable(
            MessageType::Chat,
            &MessageInfo {
                store: true,
                ..MessageInfo::default()
            }
        ));
    }
}
