//! Encoding of the issue 7 records ([`Record::Personal`], [`Record::Server`]): a child
//! module of `codec` so it shares its reader and field writers.
//!
//! Tags start at 32, leaving 7..=31 to the core's own record kinds; each change kind has
//! its own tag, fields follow in declaration order (see the layout in `codec`). A node
//! configuration is `[u8 access][u32 max_items][bool persist][u8 send_last]
//! [bool notify_retract][bool notify_delete][bool deliver_payloads][opt title]`.

use super::{DecodeError, EncodeError, Reader, put_opt_str, put_str};
use crate::db::Record;
use crate::personal::{AccessModel, Invite, NodeConfig, PersonalChange, SendLast, ServerChange};

pub mod tag {
    pub const NODE_SET: u8 = 32;
    pub const NODE_DELETE: u8 = 33;
    pub const NODE_PURGE: u8 = 34;
    pub const ITEM_SET: u8 = 35;
    pub const ITEM_DELETE: u8 = 36;
    pub const VCARD_SET: u8 = 37;
    pub const PRIVATE_SET: u8 = 38;
    pub const BLOCK_SET: u8 = 39;
    pub const BLOCK_CLEAR: u8 = 40;
    pub const INVITE_SET: u8 = 48;
    pub const INVITE_DELETE: u8 = 49;
}

/// Whether `t` is one of this module's tags.
pub fn owns_tag(t: u8) -> bool {
    (tag::NODE_SET..=tag::BLOCK_CLEAR).contains(&t)
        || t == tag::INVITE_SET
        || t == tag::INVITE_DELETE
}

fn access_byte(a: AccessModel) -> u8 {
    match a {
        AccessModel::Open => 0,
        AccessModel::Presence => 1,
        AccessModel::Whitelist => 2,
    }
}

fn send_last_byte(s: SendLast) -> u8 {
    match s {
        SendLast::Never => 0,
        SendLast::OnSub => 1,
        SendLast::OnSubAndPresence => 2,
    }
}

fn put_config(out: &mut Vec<u8>, c: &NodeConfig) -> Result<(), EncodeError> {
    out.push(access_byte(c.access_model));
    out.extend_from_slice(&c.max_items.to_le_bytes());
    out.push(u8::from(c.persist_items));
    out.push(send_last_byte(c.send_last));
    out.push(u8::from(c.notify_retract));
    out.push(u8::from(c.notify_delete));
    out.push(u8::from(c.deliver_payloads));
    put_opt_str(out, c.title.as_deref())
}

pub fn encode_personal(
    user: &str,
    change: &PersonalChange,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let t = match change {
        PersonalChange::NodeSet { .. } => tag::NODE_SET,
        PersonalChange::NodeDelete { .. } => tag::NODE_DELETE,
        PersonalChange::NodePurge { .. } => tag::NODE_PURGE,
        PersonalChange::ItemSet { .. } => tag::ITEM_SET,
        PersonalChange::ItemDelete { .. } => tag::ITEM_DELETE,
        PersonalChange::VCardSet { .. } => tag::VCARD_SET,
        PersonalChange::PrivateSet { .. } => tag::PRIVATE_SET,
        PersonalChange::BlockSet { .. } => tag::BLOCK_SET,
        PersonalChange::BlockClear => tag::BLOCK_CLEAR,
    };
    out.push(t);
    put_str(out, user)?;
    match change {
        PersonalChange::NodeSet { node, config } => {
            put_str(out, node)?;
            put_config(out, config)?;
        }
        PersonalChange::NodeDelete { node } | PersonalChange::NodePurge { node } => {
            put_str(out, node)?;
        }
        PersonalChange::ItemSet { node, id, payload } => {
            put_str(out, node)?;
            put_str(out, id)?;
            put_str(out, payload)?;
        }
        PersonalChange::ItemDelete { node, id } => {
            put_str(out, node)?;
            put_str(out, id)?;
        }
        PersonalChange::VCardSet { vcard } => put_opt_str(out, vcard.as_deref())?,
        PersonalChange::PrivateSet { key, xml } => {
            put_str(out, key)?;
            put_opt_str(out, xml.as_deref())?;
        }
        PersonalChange::BlockSet { jid, blocked } => {
            put_str(out, jid)?;
            out.push(u8::from(*blocked));
        }
        PersonalChange::BlockClear => {}
    }
    Ok(())
}

pub fn encode_server(change: &ServerChange, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    match change {
        ServerChange::InviteSet { token, invite } => {
            out.push(tag::INVITE_SET);
            put_str(out, token)?;
            put_opt_str(out, invite.account.as_deref())?;
            out.extend_from_slice(&invite.expires_unix.to_le_bytes());
        }
        ServerChange::InviteDelete { token } => {
            out.push(tag::INVITE_DELETE);
            put_str(out, token)?;
        }
    }
    Ok(())
}

impl Reader<'_> {
    fn enum_byte(&mut self, what: &'static str, max: u8) -> Result<u8, DecodeError> {
        let offset = self.pos;
        match self.u8()? {
            v if v <= max => Ok(v),
            value => Err(DecodeError::InvalidValue {
                offset,
                what,
                value,
            }),
        }
    }

    fn node_config(&mut self) -> Result<NodeConfig, DecodeError> {
        let access_model = match self.enum_byte("access model", 2)? {
            0 => AccessModel::Open,
            1 => AccessModel::Presence,
            _ => AccessModel::Whitelist,
        };
        let max_items = self.u32()?;
        let persist_items = self.flag("persist flag")?;
        let send_last = match self.enum_byte("send-last value", 2)? {
            0 => SendLast::Never,
            1 => SendLast::OnSub,
            _ => SendLast::OnSubAndPresence,
        };
        Ok(NodeConfig {
            access_model,
            max_items,
            persist_items,
            send_last,
            notify_retract: self.flag("notify flag")?,
            notify_delete: self.flag("notify flag")?,
            deliver_payloads: self.flag("payload flag")?,
            title: self.opt_string()?,
        })
    }
}

/// Decodes the fields after tag `t` (one of [`owns_tag`]).
pub(super) fn decode(t: u8, r: &mut Reader<'_>, tag_offset: usize) -> Result<Record, DecodeError> {
    if t == tag::INVITE_SET {
        return Ok(Record::Server {
            change: ServerChange::InviteSet {
                token: r.string()?,
                invite: Invite {
                    account: r.opt_string()?,
                    expires_unix: r.u64()?,
                },
            },
        });
    }
    if t == tag::INVITE_DELETE {
        return Ok(Record::Server {
            change: ServerChange::InviteDelete { token: r.string()? },
        });
    }
    let user = r.string()?;
    let change = match t {
        tag::NODE_SET => PersonalChange::NodeSet {
            node: r.string()?,
            config: r.node_config()?,
        },
        tag::NODE_DELETE => PersonalChange::NodeDelete { node: r.string()? },
        tag::NODE_PURGE => PersonalChange::NodePurge { node: r.string()? },
        tag::ITEM_SET => PersonalChange::ItemSet {
            node: r.string()?,
            id: r.string()?,
            payload: r.string()?,
        },
        tag::ITEM_DELETE => PersonalChange::ItemDelete {
            node: r.string()?,
            id: r.string()?,
        },
        tag::VCARD_SET => PersonalChange::VCardSet {
            vcard: r.opt_string()?,
        },
        tag::PRIVATE_SET => PersonalChange::PrivateSet {
            key: r.string()?,
            xml: r.opt_string()?,
        },
        tag::BLOCK_SET => PersonalChange::BlockSet {
            jid: r.string()?,
            blocked: r.flag("blocked flag")?,
        },
        tag::BLOCK_CLEAR => PersonalChange::BlockClear,
        unknown => {
            return Err(DecodeError::UnknownTag {
                offset: tag_offset,
                tag: unknown,
            });
        }
    };
    Ok(Record::Personal { user, change })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::{decode_record, encode_record};
    use super::*;

    /// One of every issue 7 variant, with Unicode, empty strings and both option states.
    pub(crate) fn sample_records() -> Vec<Record> {
        let p = |change| Record::Personal {
            user: "alice".into(),
            change,
        };
        vec![
            p(PersonalChange::NodeSet {
                node: "eu.siacs.conversations.axolotl.devicelist".into(),
                config: NodeConfig {
                    access_model: AccessModel::Open,
                    max_items: u32::MAX,
                    persist_items: false,
                    send_last: SendLast::Never,
                    notify_retract: false,
                    notify_delete: true,
                    deliver_payloads: false,
                    title: Some("Gerät 🔐".into()),
                },
            }),
            p(PersonalChange::NodeSet {
                node: String::new(),
                config: NodeConfig {
                    access_model: AccessModel::Whitelist,
                    send_last: SendLast::OnSub,
                    ..NodeConfig::default()
                },
            }),
            p(PersonalChange::NodeSet {
                node: "p".into(),
                config: NodeConfig::default(),
            }),
            p(PersonalChange::NodeDelete { node: "n".into() }),
            p(PersonalChange::NodePurge { node: "n".into() }),
            p(PersonalChange::ItemSet {
                node: "urn:xmpp:bookmarks:1".into(),
                id: "room@muc.localhost".into(),
                payload: "<conference xmlns='urn:xmpp:bookmarks:1' name='Zimmer'/>".into(),
            }),
            p(PersonalChange::ItemDelete {
                node: "n".into(),
                id: String::new(),
            }),
            p(PersonalChange::VCardSet {
                vcard: Some("<vCard xmlns='vcard-temp'><FN>Ä</FN></vCard>".into()),
            }),
            p(PersonalChange::VCardSet { vcard: None }),
            p(PersonalChange::PrivateSet {
                key: "urn:q q".into(),
                xml: Some("<q xmlns='urn:q'/>".into()),
            }),
            p(PersonalChange::PrivateSet {
                key: "urn:q q".into(),
                xml: None,
            }),
            p(PersonalChange::BlockSet {
                jid: "eve@localhost".into(),
                blocked: true,
            }),
            p(PersonalChange::BlockSet {
                jid: "localhost".into(),
                blocked: false,
            }),
            p(PersonalChange::BlockClear),
            Record::Server {
                change: ServerChange::InviteSet {
                    token: "abc".into(),
                    invite: Invite {
                        account: Some("juliet".into()),
                        expires_unix: 0x0102_0304,
                    },
                },
            },
            Record::Server {
                change: ServerChange::InviteSet {
                    token: String::new(),
                    invite: Invite {
                        account: None,
                        expires_unix: u64::MAX,
                    },
                },
            },
            Record::Server {
                change: ServerChange::InviteDelete {
                    token: "abc".into(),
                },
            },
        ]
    }

    fn encoded(record: &Record) -> Vec<u8> {
        let mut out = Vec::new();
        assert_eq!(encode_record(record, &mut out), Ok(()));
        out
    }

    #[test]
    fn every_variant_round_trips_and_every_truncation_fails() {
        for record in sample_records() {
            let bytes = encoded(&record);
            assert_eq!(decode_record(&bytes), Ok(record.clone()));
            for cut in 0..bytes.len() {
                assert!(
                    decode_record(&bytes[..cut]).is_err(),
                    "{record:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn golden_bytes() {
        let r = Record::Personal {
            user: "u".into(),
            change: PersonalChange::BlockSet {
                jid: "e".into(),
                blocked: true,
            },
        };
        assert_eq!(encoded(&r), [39, 1, 0, 0, 0, b'u', 1, 0, 0, 0, b'e', 1]);
        let r = Record::Personal {
            user: "u".into(),
            change: PersonalChange::NodeSet {
                node: "n".into(),
                config: NodeConfig {
                    access_model: AccessModel::Open,
                    max_items: 0x0102_0304,
                    ..NodeConfig::default()
                },
            },
        };
        assert_eq!(
            encoded(&r),
            [
                32, 1, 0, 0, 0, b'u', 1, 0, 0, 0, b'n', // tag, user, node
                0, 4, 3, 2, 1, // access open, max_items little-endian
                1, 2, 1, 1, 1, 0, // persist, on_sub_and_presence, flags, no title
            ]
        );
        let r = Record::Server {
            change: ServerChange::InviteSet {
                token: "t".into(),
                invite: Invite {
                    account: None,
                    expires_unix: 0x0102_0304_0506_0708,
                },
            },
        };
        assert_eq!(
            encoded(&r),
            [48, 1, 0, 0, 0, b't', 0, 8, 7, 6, 5, 4, 3, 2, 1]
        );
        let r = Record::Personal {
            user: String::new(),
            change: PersonalChange::BlockClear,
        };
        assert_eq!(encoded(&r), [40, 0, 0, 0, 0]);
    }

    #[test]
    fn out_of_range_enum_bytes_are_refused() {
        let mut bytes = encoded(&Record::Personal {
            user: "u".into(),
            change: PersonalChange::NodeSet {
                node: "n".into(),
                config: NodeConfig::default(),
            },
        });
        bytes[11] = 3;
        assert!(matches!(
            decode_record(&bytes),
            Err(DecodeError::InvalidValue {
                what: "access model",
                ..
            })
        ));
        assert!(matches!(
            decode_record(&[41, 0, 0, 0, 0]),
            Err(DecodeError::UnknownTag { tag: 41, .. })
        ));
    }
}

#[cfg(test)]
mod version_tests {
    use super::super::{LOG_MAGIC, LogHeader, crc32c};

    #[test]
    fn files_of_the_previous_version_are_still_read() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&LOG_MAGIC);
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&5u64.to_le_bytes());
        let crc = crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(LogHeader::decode(&bytes), Ok(LogHeader { generation: 5 }));
    }
}
