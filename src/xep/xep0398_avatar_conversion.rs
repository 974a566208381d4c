//! Avatars across their three specifications:
//! - XEP-0084 User Avatar 1.1 is plain PEP (`urn:xmpp:avatar:data` and
//!   `urn:xmpp:avatar:metadata` nodes), served by [`super::xep0163_pep`];
//! - XEP-0398 0.3 (User Avatar to vCard-Based Avatars Conversion): publishing avatar
//!   metadata puts the image into the vCard PHOTO, and a vCard with a PHOTO publishes
//!   the avatar, so clients of either kind see the same picture;
//! - XEP-0153 1.1 (vCard-Based Avatars): available presence without an
//!   `<x xmlns='vcard-temp:x:update'/>` gets one with the avatar's SHA-1, as §4.3 lets a
//!   server do for clients that do not add it themselves.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::Module;
use super::hooks::Hooks;
use super::state::{parse_stored, standalone_xml};
use super::xep0054_vcard::{NS_VCARD, store_vcard};
use super::xep0060_pubsub::{self as pubsub, stored_payload};
use crate::core::Core;
use crate::jid::Jid;
use crate::personal::NodeConfig;
use crate::router::ConnId;
use crate::xml::{Element, NS_CLIENT, Node, RawElement};

pub const NS_AVATAR_DATA: &str = "urn:xmpp:avatar:data";
pub const NS_AVATAR_METADATA: &str = "urn:xmpp:avatar:metadata";
pub const NS_VCARD_UPDATE: &str = "vcard-temp:x:update";
pub const NS_CONVERSION: &str = "urn:xmpp:pep-vcard-conversion:0";

pub static MODULE: Module = Module {
    name: "avatar-conversion",
    spec: "XEP-0084 1.1 via PEP, XEP-0398 0.3, XEP-0153 1.1 (server-added hash)",
    server_features: &[],
    // XEP-0398 §3: announced on the account.
    account_features: &[NS_CONVERSION],
    stream_features: &[],
    iq: &[],
};

pub static HOOKS: Hooks = Hooks {
    name: "avatar-conversion",
    rewrite_presence: Some(add_photo_hash),
    ..Hooks::NONE
};

fn sha1_hex(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes);
    crate::c2s::hex(d.as_ref())
}

fn compact(b64: &str) -> String {
    b64.chars().filter(|c| !c.is_ascii_whitespace()).collect()
}

/// `(id, type)` of the avatar the metadata item describes: the first `<info/>` without
/// a URL (XEP-0084 §4.2: that one is in the data node).
fn metadata_info(metadata: &Element) -> Option<(String, String)> {
    metadata
        .elements()
        .filter(|i| i.name == "info" && i.ns == NS_AVATAR_METADATA && i.attr("url").is_none())
        .find_map(|i| {
            Some((
                i.attr("id")?.to_string(),
                i.attr("type").unwrap_or("image/png").to_string(),
            ))
        })
}

/// The current avatar's id (SHA-1 hex), from the metadata node.
fn current_avatar_id(core: &Core, owner: &str) -> Option<String> {
    let node = pubsub::node(core, owner, NS_AVATAR_METADATA)?;
    let meta = parse_stored(&node.last()?.payload)?;
    metadata_info(&meta).map(|(id, _)| id)
}

/// The vCard's PHOTO: `(type, base64 text)`.
fn vcard_photo(vcard: &Element) -> Option<(String, String)> {
    let photo = vcard.child("PHOTO", NS_VCARD)?;
    let bin = compact(&photo.child("BINVAL", NS_VCARD)?.text());
    if bin.is_empty() {
        return None;
    }
    let t = photo
        .child("TYPE", NS_VCARD)
        .map(|t| t.text())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "image/png".to_string());
    Some((t, bin))
}

/// XEP-0398 §4: metadata was published: copy the image into the vCard.
pub fn after_publish(core: &mut Core, owner: &str, node: &str, id: &str) {
    if node != NS_AVATAR_METADATA {
        return;
    }
    let Some(meta) = stored_payload(core, owner, node, id) else {
        return;
    };
    let vcard = core
        .db
        .user(owner)
        .and_then(|u| u.personal.vcard.as_deref())
        .and_then(parse_stored)
        .unwrap_or_else(|| Element::new("vCard", NS_VCARD));
    let mut new = vcard.clone();
    new.children
        .retain(|n| !matches!(n, Node::Element(e) if e.name == "PHOTO" && e.ns == NS_VCARD));
    match metadata_info(&meta) {
        // XEP-0084 §4.5: empty metadata disables the avatar.
        None => {}
        Some((avatar_id, mime)) => {
            let Some(data) = stored_payload(core, owner, NS_AVATAR_DATA, &avatar_id) else {
                return;
            };
            let b64 = compact(&data.text());
            if vcard_photo(&vcard).is_some_and(|(_, bin)| bin == b64) {
                return;
            }
            new = new.with_child(
                Element::new("PHOTO", NS_VCARD)
                    .with_child(Element::new("TYPE", NS_VCARD).with_text(&mime))
                    .with_child(Element::new("BINVAL", NS_VCARD).with_text(&b64)),
            );
        }
    }
    if new == vcard {
        return;
    }
    if let Err(e) = store_vcard(core, owner, standalone_xml(&new)) {
        log::info!(
            "{owner}: avatar not copied into the vCard ({})",
            e.text.unwrap_or("limit")
        );
    }
}

/// XEP-0398 §5: a vCard with a PHOTO was stored: publish it as the avatar.
pub fn after_vcard_set(core: &mut Core, owner: &str, vcard: &Element) {
    let Some((mime, b64)) = vcard_photo(vcard) else {
        return;
    };
    let Ok(bytes) = BASE64.decode(b64.as_bytes()) else {
        return;
    };
    let id = sha1_hex(&bytes);
    if current_avatar_id(core, owner).as_deref() == Some(id.as_str()) {
        return;
    }
    let data = Element::new("data", NS_AVATAR_DATA).with_text(&b64);
    let meta = Element::new("metadata", NS_AVATAR_METADATA).with_child(
        Element::new("info", NS_AVATAR_METADATA)
            .with_attr("id", &id)
            .with_attr("bytes", &bytes.len().to_string())
            .with_attr("type", &mime),
    );
    let published = pubsub::publish_item(
        core,
        owner,
        NS_AVATAR_DATA,
        &id,
        standalone_xml(&data),
        NodeConfig::default(),
    )
    .and_then(|()| {
        pubsub::publish_item(
            core,
            owner,
            NS_AVATAR_METADATA,
            &id,
            standalone_xml(&meta),
            NodeConfig::default(),
        )
    });
    if let Err(e) = published {
        log::info!("{owner}: vCard photo not published as avatar ({e:?})");
    }
}

/// XEP-0153 §4.3: the avatar hash in presence, when the client left it out.
fn add_photo_hash(core: &Core, _conn: ConnId, from: &Jid, raw: &RawElement) -> Option<RawElement> {
    let owner = from.local()?;
    // Checked on the bytes first: every available presence comes here, and most either
    // carry the hash already or come from an account without an avatar.
    if has_photo_update(raw) == Some(true) {
        return None;
    }
    let hash = match current_avatar_id(core, owner) {
        Some(h) => h,
        None => {
            let vcard = parse_stored(core.db.user(owner)?.personal.vcard.as_deref()?)?;
            let (_, b64) = vcard_photo(&vcard)?;
            sha1_hex(&BASE64.decode(b64.as_bytes()).ok()?)
        }
    };
    let mut presence = Element::parse(raw, NS_CLIENT).ok()?;
    if presence.child("x", NS_VCARD_UPDATE).is_some() {
        return None;
    }
    presence = presence.with_child(
        Element::new("x", NS_VCARD_UPDATE)
            .with_child(Element::new("photo", NS_VCARD_UPDATE).with_text(&hash)),
    );
    RawElement::from_xml(&presence.to_xml(NS_CLIENT), NS_CLIENT).ok()
}

/// Whether the presence carries `<x xmlns='vcard-temp:x:update'/>`, read from its bytes;
/// `None` when they do not tell for sure.
fn has_photo_update(raw: &RawElement) -> Option<bool> {
    for child in raw.children() {
        if (child.ns?, child.name) == (NS_VCARD_UPDATE, "x") {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_of_known_input() {
        // FIPS 180-1 test vector "abc".
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn photo_and_metadata_are_read() {
        let v = parse_stored(
            "<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/jpeg</TYPE><BINVAL>YW\nJj</BINVAL></PHOTO></vCard>",
        )
        .unwrap();
        assert_eq!(vcard_photo(&v), Some(("image/jpeg".into(), "YWJj".into())));
        let m = parse_stored(
            "<metadata xmlns='urn:xmpp:avatar:metadata'><info id='x' url='https://a' type='image/gif'/>\
             <info id='y' bytes='3' type='image/png'/></metadata>",
        )
        .unwrap();
        assert_eq!(metadata_info(&m), Some(("y".into(), "image/png".into())));
    }
}
