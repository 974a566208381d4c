//! XEP-0077 In-Band Registration 2.4, with invitations (XEP-0401 0.5 account creation,
//! redeemed as XEP-0445 0.2 pre-authenticated registration).
//!
//! - Before login, when `register.enabled`: the registration form, account creation,
//!   and the `<preauth/>` token step. In `invite` mode an account is created only on a
//!   stream that presented a valid token, which is used up by the registration (§4 of
//!   XEP-0445: expiry is checked when the token is presented). TLS is required first
//!   whenever the server requires it for login. Attempts are rate limited per address
//!   and for the whole server.
//! - After login, always: §3.3 password change and §3.2 account removal by the owner.
//!
//! Invitations are made with `xmppd invite` ([`Core::admin_invite_add`]) and stored.

use core::net::IpAddr;

use super::hooks::Hooks;
use super::state::write_error_with_app;
use super::{IqReply, IqRequest, IqRoute, Module, Targets};
use crate::core::{AdminError, Core};
use crate::db::Record;
use crate::error::{ErrorType, StanzaCondition, StanzaError};
use crate::limits::{
    CAP_INVITES, CAP_REGISTER_ADDRESSES, REGISTER_PER_HOUR_TOTAL, REGISTER_WINDOW_MS,
};
use crate::personal::{Invite, ServerChange};
use crate::router::ConnId;
use crate::sasl::Credentials;
use crate::stanza::IqType;
use crate::time::Millis;
use crate::xml::escape::{escape_attr, escape_text};
use crate::xml::{Element, NS_CLIENT, RawElement};

pub const NS_REGISTER: &str = "jabber:iq:register";
pub const NS_REGISTER_FEATURE: &str = "http://jabber.org/features/iq-register";
pub const NS_PARS: &str = "urn:xmpp:pars:0";
pub const NS_IBR_TOKEN: &str = "urn:xmpp:ibr-token:0";

pub static MODULE: Module = Module {
    name: "register",
    spec: "XEP-0077 2.4 (XEP-0401 0.5 invitations redeemed per XEP-0445 0.2)",
    server_features: &[NS_REGISTER],
    account_features: &[],
    stream_features: &[],
    iq: &[IqRoute {
        element: "query",
        ns: NS_REGISTER,
        targets: Targets::SERVER_AND_OWN,
        get: Some(registered_get),
        set: Some(registered_set),
    }],
};

pub static HOOKS: Hooks = Hooks {
    name: "register",
    preauth_features: Some(preauth_features),
    preauth_iq: Some(preauth_iq),
    ..Hooks::NONE
};

/// Registration attempts per address and in all, per hour (a sliding-ish window: a
/// counter reset an hour after its first attempt).
#[derive(Default)]
pub struct RegisterLimiter {
    by_ip: Vec<(IpAddr, Millis, usize)>,
    total: Option<(Millis, usize)>,
}

impl RegisterLimiter {
    /// Counts an attempt; `false` when it is over a limit.
    pub fn allow(&mut self, ip: IpAddr, now: Millis, per_ip: usize) -> bool {
        let fresh = |start: Millis| now.saturating_sub(start) >= REGISTER_WINDOW_MS;
        self.by_ip.retain(|(_, start, _)| !fresh(*start));
        let total = match self.total {
            Some((start, n)) if !fresh(start) => (start, n),
            _ => (now, 0),
        };
        if total.1 >= REGISTER_PER_HOUR_TOTAL {
            self.total = Some(total);
            return false;
        }
        let pos = self.by_ip.iter().position(|(a, _, _)| *a == ip);
        let ok = match pos.and_then(|p| self.by_ip.get_mut(p)) {
            Some(entry) if entry.2 >= per_ip => false,
            Some(entry) => {
                entry.2 += 1;
                true
            }
            None => {
                if self.by_ip.len() >= CAP_REGISTER_ADDRESSES {
                    self.by_ip.remove(0);
                }
                self.by_ip.push((ip, now, 1));
                true
            }
        };
        if ok {
            self.total = Some((total.0, total.1 + 1));
        } else {
            self.total = Some(total);
        }
        ok
    }
}

/// Whether registration may be offered on this stream now.
fn offered(core: &Core, tls: bool) -> bool {
    core.ext.services.register_enabled && (tls || !core.cfg.require_encryption)
}

fn preauth_features(core: &Core, tls: bool, out: &mut Vec<u8>) {
    if offered(core, tls) {
        // XEP-0445 §3: tokens are accepted; XEP-0077 §4: registration is offered.
        out.extend_from_slice(b"<register xmlns='urn:xmpp:ibr-token:0'/>");
        out.extend_from_slice(b"<register xmlns='http://jabber.org/features/iq-register'/>");
    }
}

/// An answer's payload, or its error with an optional application condition.
type Answer<'a> = Result<&'a [u8], (StanzaError, Option<(&'a str, &'a str)>)>;

/// Writes an iq answer to an unauthenticated client (it has no address yet).
fn preauth_reply(core: &mut Core, conn: ConnId, id: &str, body: Answer<'_>) {
    let domain = core.cfg.domain.clone();
    core.send(conn, |out| {
        out.extend_from_slice(b"<iq type='");
        out.extend_from_slice(if body.is_ok() { b"result" } else { b"error" });
        out.extend_from_slice(b"' id='");
        escape_attr(out, id);
        out.extend_from_slice(b"' from='");
        escape_attr(out, &domain);
        match &body {
            Ok([]) => out.extend_from_slice(b"'/>"),
            Ok(b) => {
                out.extend_from_slice(b"'>");
                out.extend_from_slice(b);
                out.extend_from_slice(b"</iq>");
            }
            Err((err, app)) => {
                out.extend_from_slice(b"'>");
                write_error_with_app(out, err, *app);
                out.extend_from_slice(b"</iq>");
            }
        }
    });
}

fn err(cond: StanzaCondition, etype: ErrorType, text: &'static str) -> StanzaError {
    StanzaError::new(cond).with_type(etype).with_text(text)
}

fn preauth_iq(core: &mut Core, conn: ConnId, tls: bool, raw: &RawElement) -> bool {
    if !offered(core, tls) {
        return false;
    }
    let Ok(iq) = Element::parse(raw, NS_CLIENT) else {
        return false;
    };
    let Some(id) = iq.attr("id").map(str::to_string) else {
        return false;
    };
    let Some(itype) = IqType::parse(iq.attr("type")) else {
        return false;
    };
    let mut children = iq.elements();
    let (Some(payload), None) = (children.next(), children.next()) else {
        return false;
    };
    match (itype, payload.name.as_str(), payload.ns.as_str()) {
        (IqType::Get, "query", NS_REGISTER) => {
            let reserved = core
                .ext
                .conn(conn)
                .and_then(|e| e.preauth_token.clone())
                .and_then(|t| {
                    core.db
                        .server
                        .invites
                        .get(&t)
                        .and_then(|i| i.account.clone())
                });
            let mut body = b"<query xmlns='jabber:iq:register'><instructions>Choose a user name and password.</instructions>".to_vec();
            match reserved {
                Some(name) => {
                    body.extend_from_slice(b"<username>");
                    escape_text(&mut body, &name);
                    body.extend_from_slice(b"</username>");
                }
                None => body.extend_from_slice(b"<username/>"),
            }
            body.extend_from_slice(b"<password/></query>");
            preauth_reply(core, conn, &id, Ok(&body));
        }
        (IqType::Set, "preauth", NS_PARS) => {
            let token = payload.attr("token").unwrap_or("");
            let now = core.unix_now();
            let valid = core
                .db
                .server
                .invites
                .get(token)
                .is_some_and(|i| i.expires_unix > now);
            if valid {
                let token = token.to_string();
                if let Some(ext) = core.ext.conn_mut(conn) {
                    ext.preauth_token = Some(token);
                }
                preauth_reply(core, conn, &id, Ok(b""));
            } else {
                let e = err(
                    StanzaCondition::ItemNotFound,
                    ErrorType::Cancel,
                    "The provided token is invalid or expired",
                );
                preauth_reply(core, conn, &id, Err((e, None)));
            }
        }
        (IqType::Set, "query", NS_REGISTER) => {
            let result = register(core, conn, payload);
            match result {
                Ok(()) => preauth_reply(core, conn, &id, Ok(b"")),
                Err(e) => preauth_reply(core, conn, &id, Err((e, None))),
            }
        }
        (IqType::Get | IqType::Set, _, _) => {
            let e = StanzaError::new(StanzaCondition::ServiceUnavailable);
            preauth_reply(core, conn, &id, Err((e, None)));
        }
        _ => {}
    }
    true
}

fn field(payload: &Element, name: &str) -> Option<String> {
    payload.child(name, NS_REGISTER).map(|e| e.text())
}

/// §3.1: creates an account for an unauthenticated client.
fn register(core: &mut Core, conn: ConnId, payload: &Element) -> Result<(), StanzaError> {
    let ip = core.conns.get(conn).map(|c| c.ip);
    let per_ip = core.cfg.limits.register_per_ip_per_hour;
    let now = core.now;
    if let Some(ip) = ip
        && !core.ext.register.allow(ip, now, per_ip)
    {
        log::warn!("[{conn}] registration refused: too many attempts from {ip}");
        return Err(err(
            StanzaCondition::PolicyViolation,
            ErrorType::Wait,
            "too many registrations; try again later",
        ));
    }
    let (Some(username), Some(password)) = (field(payload, "username"), field(payload, "password"))
    else {
        return Err(err(
            StanzaCondition::NotAcceptable,
            ErrorType::Modify,
            "a user name and a password are required",
        ));
    };
    let user = crate::jid::normalize_localpart(&username).map_err(|_| {
        err(
            StanzaCondition::JidMalformed,
            ErrorType::Modify,
            "not a valid user name",
        )
    })?;
    let token = core.ext.conn(conn).and_then(|e| e.preauth_token.clone());
    let invite = token.as_ref().and_then(|t| {
        core.db
            .server
            .invites
            .get(t)
            .cloned()
            .map(|i| (t.clone(), i))
    });
    if !core.ext.services.register_open && invite.is_none() {
        return Err(err(
            StanzaCondition::Forbidden,
            ErrorType::Auth,
            "registration on this server is by invitation only",
        ));
    }
    if let Some((
        _,
        Invite {
            account: Some(reserved),
            ..
        },
    )) = &invite
        && *reserved != user
    {
        return Err(err(
            StanzaCondition::NotAllowed,
            ErrorType::Cancel,
            "this invitation is for another user name",
        ));
    }
    // XEP-0401 §5: a name reserved by an invitation is not for others.
    let reserved_elsewhere = core
        .db
        .server
        .invites
        .iter()
        .any(|(t, i)| i.account.as_deref() == Some(user.as_str()) && Some(t) != token.as_ref());
    if core.db.user(&user).is_some() || reserved_elsewhere {
        return Err(err(
            StanzaCondition::Conflict,
            ErrorType::Cancel,
            "that user name is taken",
        ));
    }
    let iterations = core.ext.services.scram_iterations;
    let creds = Credentials::new_random(&password, iterations, &mut *core.rng).map_err(|_| {
        err(
            StanzaCondition::NotAcceptable,
            ErrorType::Modify,
            "unusable password",
        )
    })?;
    let seq = core
        .admin_user_set(&user, creds, true)
        .map_err(|e| match e {
            AdminError::TooManyAccounts => err(
                StanzaCondition::NotAllowed,
                ErrorType::Cancel,
                "the server holds its maximum number of accounts",
            ),
            AdminError::Exists => err(
                StanzaCondition::Conflict,
                ErrorType::Cancel,
                "that user name is taken",
            ),
            _ => StanzaError::new(StanzaCondition::InternalServerError),
        })?;
    let mut last = seq;
    if let Some((token, _)) = invite {
        last = core.persist(Record::Server {
            change: ServerChange::InviteDelete { token },
        });
        if let Some(ext) = core.ext.conn_mut(conn) {
            ext.preauth_token = None;
        }
    }
    // The answer reports the new account: it waits until the account is on disk.
    core.set_hold(Some(last));
    log::info!("[{conn}] registered {user}@{}", core.cfg.domain);
    Ok(())
}

/// §3.1 for a logged-in user: already registered.
fn registered_get(_core: &mut Core, req: &IqRequest) -> IqReply {
    let user = req.from.local().unwrap_or("");
    IqReply::Result(Some(
        Element::new("query", NS_REGISTER)
            .with_child(Element::new("registered", NS_REGISTER))
            .with_child(Element::new("username", NS_REGISTER).with_text(user))
            .with_child(Element::new("password", NS_REGISTER)),
    ))
}

/// §3.2 account removal and §3.3 password change by a logged-in user.
fn registered_set(core: &mut Core, req: &IqRequest) -> IqReply {
    let Some(user) = req.from.local().map(str::to_string) else {
        return IqReply::Error(StanzaError::new(StanzaCondition::BadRequest));
    };
    if req.payload.child("remove", NS_REGISTER).is_some() {
        // The result goes first: removing the account closes this stream.
        super::state::send_result_raw(core, req, b"");
        log::info!(
            "[{}] {user}@{} removed its account",
            req.conn,
            core.cfg.domain
        );
        let _ = core.admin_user_delete(&user);
        return IqReply::Done;
    }
    let (Some(username), Some(password)) = (
        field(&req.payload, "username"),
        field(&req.payload, "password"),
    ) else {
        return IqReply::Error(StanzaError::new(StanzaCondition::BadRequest));
    };
    if crate::jid::normalize_localpart(&username).ok().as_deref() != Some(user.as_str()) {
        // §3.3: only one's own password can be changed.
        return IqReply::Error(
            StanzaError::new(StanzaCondition::NotAuthorized).with_type(ErrorType::Modify),
        );
    }
    let iterations = core.ext.services.scram_iterations;
    let Ok(credentials) = Credentials::new_random(&password, iterations, &mut *core.rng) else {
        return IqReply::Error(
            StanzaError::new(StanzaCondition::NotAcceptable).with_text("unusable password"),
        );
    };
    core.persist(Record::UserSet {
        user: user.clone(),
        credentials,
    });
    log::info!(
        "[{}] {user}@{} changed its password",
        req.conn,
        core.cfg.domain
    );
    IqReply::Result(None)
}

impl Core {
    /// Stores a registration invitation (from `xmppd invite`); returns the record number
    /// to wait for. Expired invitations are dropped first.
    pub fn admin_invite_add(&mut self, token: &str, invite: Invite) -> Result<u64, AdminError> {
        if token.is_empty() || token.len() > 256 {
            return Err(AdminError::InvalidJid);
        }
        if let Some(name) = &invite.account
            && (self.db.user(name).is_some()
                || self
                    .db
                    .server
                    .invites
                    .values()
                    .any(|i| i.account.as_deref() == Some(name.as_str())))
        {
            return Err(AdminError::Exists);
        }
        let now = self.unix_now();
        let expired: Vec<String> = self
            .db
            .server
            .invites
            .iter()
            .filter(|(_, i)| i.expires_unix <= now)
            .map(|(t, _)| t.clone())
            .collect();
        for token in expired {
            self.persist(Record::Server {
                change: ServerChange::InviteDelete { token },
            });
        }
        if self.db.server.invites.len() >= CAP_INVITES {
            self.set_hold(None);
            return Err(AdminError::TooManyInvites);
        }
        let seq = self.persist(Record::Server {
            change: ServerChange::InviteSet {
                token: token.to_string(),
                invite,
            },
        });
        self.set_hold(None);
        Ok(seq)
    }
}

/// `xmpp:` URI of an invitation (XEP-0401 §3.3, XEP-0445 §2).
pub fn invite_uri(domain: &str, account: Option<&str>, token: &str) -> String {
    match account {
        Some(a) => format!("xmpp:{a}@{domain}?register;preauth={token}"),
        None => format!("xmpp:{domain}?register;preauth={token}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_counts_per_address_and_resets_after_an_hour() {
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let mut l = RegisterLimiter::default();
        assert!(l.allow(a, Millis(0), 2));
        assert!(l.allow(a, Millis(1), 2));
        assert!(!l.allow(a, Millis(2), 2));
        assert!(l.allow(b, Millis(3), 2));
        assert!(l.allow(a, Millis(REGISTER_WINDOW_MS), 2));
    }

    #[test]
    fn limiter_has_a_total_bound() {
        let mut l = RegisterLimiter::default();
        let mut ok = 0;
        for i in 0..200u32 {
            let ip: IpAddr = [10, 1, (i >> 8) as u8, i as u8].into();
            if l.allow(ip, Millis(5), 5) {
                ok += 1;
            }
        }
        assert_eq!(ok, REGISTER_PER_HOUR_TOTAL);
    }

    #[test]
    fn uris_follow_xep_0401() {
        assert_eq!(
            invite_uri("example.org", Some("juliet"), "T0K"),
            "xmpp:juliet@example.org?register;preauth=T0K"
        );
        assert_eq!(
            invite_uri("example.org", None, "T"),
            "xmpp:example.org?register;preauth=T"
        );
    }
}
