//! The persistent state as plain data, changed only by applying [`Record`]s.
//!
//! Every change the server makes to accounts, rosters or pending subscriptions is a record:
//! the core applies it here and hands the same record to the store, which appends it to a
//! checksummed log. Loading replays snapshot + log through the same [`Db::apply`], so the
//! in-memory state and the file can never disagree on what a change means. Later kinds of
//! data (offline messages, PEP, rooms) add record variants; the encoding is versioned.

use std::collections::BTreeMap;

use crate::sasl::Credentials;

/// RFC 6121 §2.1.2.5 subscription states of a roster item (the `ask` flag is separate).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Subscription {
    #[default]
    None,
    To,
    From,
    Both,
}

impl Subscription {
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }
    /// The contact may see the user's presence.
    pub fn has_from(self) -> bool {
        matches!(self, Subscription::From | Subscription::Both)
    }
    /// The user receives the contact's presence.
    pub fn has_to(self) -> bool {
        matches!(self, Subscription::To | Subscription::Both)
    }
    pub fn from_flags(to: bool, from: bool) -> Subscription {
        match (to, from) {
            (false, false) => Subscription::None,
            (true, false) => Subscription::To,
            (false, true) => Subscription::From,
            (true, true) => Subscription::Both,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RosterItem {
    pub name: Option<String>,
    pub groups: Vec<String>,
    pub subscription: Subscription,
    /// A subscription request from the user to the contact awaits an answer
    /// ("Pending Out", shown to clients as `ask='subscribe'`).
    pub ask: bool,
}

impl RosterItem {
    /// Bytes the item holds in memory, roughly (strings plus map-entry overhead); what
    /// `max_roster_bytes` counts.
    pub fn footprint(&self, jid: &str) -> usize {
        48 + jid.len()
            + self.name.as_ref().map_or(0, String::len)
            + self.groups.iter().map(|g| 24 + g.len()).sum::<usize>()
    }
}

/// Bytes a pending request holds in memory, roughly.
pub fn pending_footprint(jid: &str, status: Option<&str>) -> usize {
    48 + jid.len() + status.map_or(0, str::len)
}

/// XEP-0313 §6 archiving preferences: which conversations go into the archive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MamPrefs {
    pub default: MamDefault,
    /// Bare JIDs always / never archived, whatever the default.
    pub always: Vec<String>,
    pub never: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MamDefault {
    #[default]
    Always,
    Never,
    /// Only contacts in the roster.
    Roster,
}

impl MamDefault {
    pub fn as_str(self) -> &'static str {
        match self {
            MamDefault::Always => "always",
            MamDefault::Never => "never",
            MamDefault::Roster => "roster",
        }
    }
    pub fn parse(s: &str) -> Option<MamDefault> {
        match s {
            "always" => Some(MamDefault::Always),
            "never" => Some(MamDefault::Never),
            "roster" => Some(MamDefault::Roster),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub credentials: Credentials,
    /// Keyed by the contact's normalised bare JID.
    pub roster: BTreeMap<String, RosterItem>,
    /// Roster version (RFC 6121 §2.6): increases with every roster change.
    pub roster_ver: u64,
    /// Inbound subscription requests not yet answered ("Pending In"), keyed by the
    /// requester's bare JID, with the optional `<status/>` text of the request.
    pub pending_in: BTreeMap<String, Option<String>>,
    pub mam: MamPrefs,
    /// PEP, vCard, private XML, block list (issue 7; see `crate::personal`).
    pub personal: crate::personal::Personal,
}

impl User {
    pub fn new(credentials: Credentials) -> User {
        User {
            credentials,
            roster: BTreeMap::new(),
            roster_ver: 0,
            pending_in: BTreeMap::new(),
            mam: MamPrefs::default(),
            personal: crate::personal::Personal::default(),
        }
    }

    /// What the account's roster and pending requests hold in memory, roughly.
    pub fn roster_footprint(&self) -> usize {
        self.roster
            .iter()
            .map(|(j, i)| i.footprint(j))
            .sum::<usize>()
            + self
                .pending_in
                .iter()
                .map(|(j, s)| pending_footprint(j, s.as_deref()))
                .sum::<usize>()
    }
}

/// One change to the persistent state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// Creates the account or replaces its credentials (a password change keeps the roster).
    UserSet {
        user: String,
        credentials: Credentials,
    },
    UserDelete {
        user: String,
    },
    RosterSet {
        user: String,
        ver: u64,
        jid: String,
        item: RosterItem,
    },
    RosterDelete {
        user: String,
        ver: u64,
        jid: String,
    },
    PendingInSet {
        user: String,
        jid: String,
        status: Option<String>,
    },
    PendingInDelete {
        user: String,
        jid: String,
    },
    MamPrefs {
        user: String,
        prefs: MamPrefs,
    },
    // ---- issue 7: personal data and registration invites (see `crate::personal`) ----
    /// A change to an account's PEP nodes, vCard, private XML or block list.
    Personal {
        user: String,
        change: crate::personal::PersonalChange,
    },
    /// A change to server-wide data (registration invites); belongs to no account.
    Server {
        change: crate::personal::ServerChange,
    },
}

impl Record {
    /// The account the record belongs to.
    pub fn user(&self) -> &str {
        match self {
            Record::UserSet { user, .. }
            | Record::UserDelete { user }
            | Record::RosterSet { user, .. }
            | Record::RosterDelete { user, .. }
            | Record::PendingInSet { user, .. }
            | Record::PendingInDelete { user, .. }
            | Record::MamPrefs { user, .. }
            | Record::Personal { user, .. } => user,
            Record::Server { .. } => "",
        }
    }
}

/// Accounts keyed by normalised localpart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Db {
    pub users: BTreeMap<String, User>,
    /// Registration invites (issue 7).
    pub server: crate::personal::ServerData,
}

impl Db {
    /// Applies a change. Idempotent, so replaying a log over a snapshot that already holds
    /// some of its records is harmless; records about a deleted account are ignored.
    pub fn apply(&mut self, record: &Record) {
        match record {
            Record::UserSet { user, credentials } => match self.users.get_mut(user) {
                Some(u) => u.credentials = credentials.clone(),
                None => {
                    self.users
                        .insert(user.clone(), User::new(credentials.clone()));
                }
            },
            Record::UserDelete { user } => {
                self.users.remove(user);
            }
            Record::RosterSet {
                user,
                ver,
                jid,
                item,
            } => {
                if let Some(u) = self.users.get_mut(user) {
                    u.roster.insert(jid.clone(), item.clone());
                    u.roster_ver = u.roster_ver.max(*ver);
                }
            }
            Record::RosterDelete { user, ver, jid } => {
                if let Some(u) = self.users.get_mut(user) {
                    u.roster.remove(jid);
                    u.roster_ver = u.roster_ver.max(*ver);
                }
            }
            Record::PendingInSet { user, jid, status } => {
                if let Some(u) = self.users.get_mut(user) {
                    u.pending_in.insert(jid.clone(), status.clone());
                }
            }
            Record::PendingInDelete { user, jid } => {
                if let Some(u) = self.users.get_mut(user) {
                    u.pending_in.remove(jid);
                }
            }
            Record::MamPrefs { user, prefs } => {
                if let Some(u) = self.users.get_mut(user) {
                    u.mam = prefs.clone();
                }
            }
            Record::Personal { user, change } => {
                if let Some(u) = self.users.get_mut(user) {
                    u.personal.apply(change);
                }
            }
            Record::Server { change } => self.server.apply(change),
        }
    }

    /// The records that rebuild this state from nothing (the content of a snapshot).
    /// The roster version is carried by a `RosterSet` of each item; an account whose roster
    /// is empty but whose version moved on would restart at 0, which only makes clients
    /// fetch the (empty) roster once more.
    pub fn to_records(&self) -> Vec<Record> {
        let mut out = Vec::new();
        for (name, u) in &self.users {
            out.push(Record::UserSet {
                user: name.clone(),
                credentials: u.credentials.clone(),
            });
            for (jid, item) in &u.roster {
                out.push(Record::RosterSet {
                    user: name.clone(),
                    ver: u.roster_ver,
                    jid: jid.clone(),
                    item: item.clone(),
                });
            }
            for (jid, status) in &u.pending_in {
                out.push(Record::PendingInSet {
                    user: name.clone(),
                    jid: jid.clone(),
                    status: status.clone(),
                });
            }
            if u.mam != MamPrefs::default() {
                out.push(Record::MamPrefs {
                    user: name.clone(),
                    prefs: u.mam.clone(),
                });
            }
            for change in u.personal.to_changes() {
                out.push(Record::Personal {
                    user: name.clone(),
                    change,
                });
            }
        }
        for change in self.server.to_changes() {
            out.push(Record::Server { change });
        }
        out
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_records_rebuild_the_same_state() {
        let mut db = Db::default();
        db.apply(&Record::UserSet {
            user: "alice".into(),
            credentials: Credentials::filled(1),
        });
        db.apply(&Record::RosterSet {
            user: "alice".into(),
            ver: 3,
            jid: "bob@localhost".into(),
            item: RosterItem {
                name: Some("Bob".into()),
                groups: vec!["Friends".into()],
                subscription: Subscription::Both,
                ask: false,
            },
        });
        db.apply(&Record::PendingInSet {
            user: "alice".into(),
            jid: "eve@localhost".into(),
            status: Some("hi".into()),
        });
        let mut rebuilt = Db::default();
        for r in db.to_records() {
            rebuilt.apply(&r);
        }
        assert_eq!(rebuilt, db);
        assert_eq!(rebuilt.user("alice").map(|u| u.roster_ver), Some(3));
    }

    #[test]
    fn replay_is_idempotent_and_ignores_deleted_users() {
        let mut db = Db::default();
        let recs = [
            Record::UserSet {
                user: "a".into(),
                credentials: Credentials::filled(1),
            },
            Record::RosterSet {
                user: "a".into(),
                ver: 1,
                jid: "b@x".into(),
                item: RosterItem::default(),
            },
            Record::UserDelete { user: "a".into() },
            Record::RosterSet {
                user: "a".into(),
                ver: 2,
                jid: "c@x".into(),
                item: RosterItem::default(),
            },
        ];
        for r in &recs {
            db.apply(r);
        }
        for r in &recs {
            db.apply(r);
        }
        assert!(db.users.is_empty());
    }

    #[test]
    fn password_change_keeps_roster() {
        let mut db = Db::default();
        db.apply(&Record::UserSet {
            user: "a".into(),
            credentials: Credentials::filled(1),
        });
        db.apply(&Record::RosterSet {
            user: "a".into(),
            ver: 1,
            jid: "b@x".into(),
            item: RosterItem::default(),
        });
        db.apply(&Record::UserSet {
            user: "a".into(),
            credentials: Credentials::filled(2),
        });
        let u = db
            .user("a")
            .map(|u| (u.roster.len(), u.credentials.salt[0]));
        assert_eq!(u, Some((1, 2)));
    }
}
