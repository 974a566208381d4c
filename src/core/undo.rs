//! Undoing changes the store could not make durable.
//!
//! The core applies a record to memory at once and holds back everything that reports it
//! until the store confirms it. If the store fails (a full disk, a read-only data dir),
//! memory must return to what the disk holds: each uncommitted record keeps the state it
//! replaced, and the core restores those in reverse order.

use crate::db::{Db, Record, RosterItem, User};

pub(crate) enum Undo {
    /// The account as it was before `UserSet`/`UserDelete` (`None`: it did not exist).
    User {
        user: String,
        prev: Option<Box<User>>,
    },
    RosterItem {
        user: String,
        jid: String,
        prev: Option<RosterItem>,
        prev_ver: u64,
    },
    /// `prev`: the pending request's status text if a request was pending.
    Pending {
        user: String,
        jid: String,
        prev: Option<Option<String>>,
    },
    MamPrefs {
        user: String,
        prev: Option<crate::db::MamPrefs>,
    },
    /// Issue 7: personal data (`crate::personal`) and server-wide invites.
    Personal {
        user: String,
        undo: crate::personal::PersonalUndo,
    },
    Invite {
        token: String,
        prev: Option<crate::personal::Invite>,
    },
}

/// What `record` will replace in `db` (call before applying it).
pub(crate) fn undo_for(db: &Db, record: &Record) -> Undo {
    match record {
        Record::UserSet { user, .. } | Record::UserDelete { user } => Undo::User {
            user: user.clone(),
            prev: db.users.get(user).cloned().map(Box::new),
        },
        Record::RosterSet { user, jid, .. } | Record::RosterDelete { user, jid, .. } => {
            let u = db.users.get(user);
            Undo::RosterItem {
                user: user.clone(),
                jid: jid.clone(),
                prev: u.and_then(|u| u.roster.get(jid).cloned()),
                prev_ver: u.map_or(0, |u| u.roster_ver),
            }
        }
        Record::PendingInSet { user, jid, .. } | Record::PendingInDelete { user, jid } => {
            Undo::Pending {
                user: user.clone(),
                jid: jid.clone(),
                prev: db
                    .users
                    .get(user)
                    .and_then(|u| u.pending_in.get(jid).cloned()),
            }
        }
        Record::MamPrefs { user, .. } => Undo::MamPrefs {
            user: user.clone(),
            prev: db.users.get(user).map(|u| u.mam.clone()),
        },
        Record::Personal { user, change } => Undo::Personal {
            user: user.clone(),
            undo: db
                .users
                .get(user)
                .map_or(crate::personal::PersonalUndo::VCard(None), |u| {
                    u.personal.undo_for(change)
                }),
        },
        Record::Server { change } => {
            let (token, prev) = db.server.undo_for(change);
            Undo::Invite { token, prev }
        }
    }
}

/// Restores what [`undo_for`] saved.
pub(crate) fn apply_undo(db: &mut Db, undo: Undo) {
    match undo {
        Undo::User { user, prev } => match prev {
            Some(u) => {
                db.users.insert(user, *u);
            }
            None => {
                db.users.remove(&user);
            }
        },
        Undo::RosterItem {
            user,
            jid,
            prev,
            prev_ver,
        } => {
            if let Some(u) = db.users.get_mut(&user) {
                match prev {
                    Some(item) => {
                        u.roster.insert(jid, item);
                    }
                    None => {
                        u.roster.remove(&jid);
                    }
                }
                u.roster_ver = prev_ver;
            }
        }
        Undo::Pending { user, jid, prev } => {
            if let Some(u) = db.users.get_mut(&user) {
                match prev {
                    Some(status) => {
                        u.pending_in.insert(jid, status);
                    }
                    None => {
                        u.pending_in.remove(&jid);
                    }
                }
            }
        }
        Undo::MamPrefs { user, prev } => {
            if let (Some(u), Some(prev)) = (db.users.get_mut(&user), prev) {
                u.mam = prev;
            }
        }
        Undo::Personal { user, undo } => {
            if let Some(u) = db.users.get_mut(&user) {
                u.personal.apply_undo(undo);
            }
        }
        Undo::Invite { token, prev } => db.server.apply_undo(token, prev),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Subscription;
    use crate::sasl::Credentials;

    #[test]
    fn undoing_in_reverse_restores_the_exact_state() {
        let mut db = Db::default();
        db.apply(&Record::UserSet {
            user: "a".into(),
            credentials: Credentials::filled(1),
        });
        db.apply(&Record::RosterSet {
            user: "a".into(),
            ver: 4,
            jid: "b@x".into(),
            item: RosterItem::default(),
        });
        let before = db.clone();
        let records = [
            Record::RosterSet {
                user: "a".into(),
                ver: 5,
                jid: "b@x".into(),
                item: RosterItem {
                    subscription: Subscription::Both,
                    ..RosterItem::default()
                },
            },
            Record::RosterSet {
                user: "a".into(),
                ver: 6,
                jid: "c@x".into(),
                item: RosterItem::default(),
            },
            Record::PendingInSet {
                user: "a".into(),
                jid: "d@x".into(),
                status: Some("hi".into()),
            },
            Record::UserSet {
                user: "new".into(),
                credentials: Credentials::filled(2),
            },
            Record::UserSet {
                user: "a".into(),
                credentials: Credentials::filled(3),
            },
            Record::RosterDelete {
                user: "a".into(),
                ver: 7,
                jid: "b@x".into(),
            },
        ];
        let mut undos = Vec::new();
        for r in &records {
            undos.push(undo_for(&db, r));
            db.apply(r);
        }
        assert_ne!(db, before);
        for u in undos.into_iter().rev() {
            apply_undo(&mut db, u);
        }
        assert_eq!(db, before);
    }
}
