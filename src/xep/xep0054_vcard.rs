//! XEP-0054 vcard-temp 1.2: an account's vCard, set by its owner and read by anyone on
//! the server (clients show it as the contact's profile), bounded by
//! `limits.max_vcard_bytes`. A PHOTO in it is kept in step with the XEP-0084 avatar
//! (XEP-0398, [`super::xep0398_avatar_conversion`]).

use super::state::{send_result_raw, standalone_xml};
use super::{IqReply, IqRequest, IqRoute, Module, Targets};
use crate::core::Core;
use crate::db::Record;
use crate::error::{ErrorType, StanzaCondition, StanzaError};
use crate::personal::PersonalChange;

pub const NS_VCARD: &str = "vcard-temp";

pub static MODULE: Module = Module {
    name: "vcard",
    spec: "XEP-0054 1.2",
    server_features: &[NS_VCARD],
    account_features: &[],
    stream_features: &[],
    iq: &[IqRoute {
        element: "vCard",
        ns: NS_VCARD,
        targets: Targets::ACCOUNTS,
        get: Some(vcard_get),
        set: Some(vcard_set),
    }],
};

/// §3.1 / §3.3: the stored vCard, or an empty one.
fn vcard_get(core: &mut Core, req: &IqRequest) -> IqReply {
    let Some((owner, _)) = super::state::owner_of(core, req) else {
        return IqReply::Error(StanzaError::new(StanzaCondition::ItemNotFound));
    };
    let stored = core.db.user(&owner).and_then(|u| u.personal.vcard.clone());
    let body = stored.unwrap_or_else(|| "<vCard xmlns='vcard-temp'/>".to_string());
    send_result_raw(core, req, body.as_bytes());
    IqReply::Done
}

/// Stores `vcard` (serialised) for `owner` if it fits; `Err` names why not.
pub fn store_vcard(core: &mut Core, owner: &str, vcard: String) -> Result<(), StanzaError> {
    if vcard.len() > core.cfg.limits.max_vcard_bytes {
        return Err(StanzaError::new(StanzaCondition::NotAcceptable)
            .with_type(ErrorType::Modify)
            .with_text("the vCard is larger than the server keeps"));
    }
    let Some(p) = core.db.user(owner).map(|u| &u.personal) else {
        return Err(StanzaError::new(StanzaCondition::ItemNotFound));
    };
    let old = p.vcard.as_ref().map_or(0, |v| 24 + v.len());
    if p.footprint().saturating_sub(old) + 24 + vcard.len() > core.cfg.limits.max_personal_bytes {
        return Err(StanzaError::new(StanzaCondition::ResourceConstraint)
            .with_text("the account's personal data is at its limit"));
    }
    if p.vcard.as_deref() == Some(vcard.as_str()) {
        return Ok(());
    }
    core.persist(Record::Personal {
        user: owner.to_string(),
        change: PersonalChange::VCardSet { vcard: Some(vcard) },
    });
    Ok(())
}

/// §3.2: the owner replaces its vCard.
fn vcard_set(core: &mut Core, req: &IqRequest) -> IqReply {
    let Some((owner, true)) = super::state::owner_of(core, req) else {
        return IqReply::Error(StanzaError::new(StanzaCondition::Forbidden));
    };
    match store_vcard(core, &owner, standalone_xml(&req.payload)) {
        Ok(()) => {
            super::xep0398_avatar_conversion::after_vcard_set(core, &owner, &req.payload);
            IqReply::Result(None)
        }
        Err(e) => IqReply::Error(e),
    }
}
