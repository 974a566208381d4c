//! XEP-0060 Publish-Subscribe 1.26, the subset PEP needs (XEP-0163 §7 lists it):
//! publish (with item ids, auto-create and `publish-options` preconditions, XEP-0223),
//! retrieve items (all, by id, `max_items`), retract, create, configure, delete, purge,
//! the default configuration, and the notifications these cause.
//!
//! Every node belongs to an account ([`crate::personal::Personal::nodes`]); the service
//! is the account's bare JID. Who may read a node and who is notified is the PEP
//! module's business ([`super::xep0163_pep`]); this file is the protocol.
//!
//! Not offered: explicit subscriptions and subscription options (PEP delivers by
//! presence and `+notify`, XEP-0163 §4.3), affiliations other than the owner, collection
//! nodes, instant nodes, item expiry, `roster` and `authorize` access models.

use super::data_forms;
use super::state::{parse_stored, reply_error_app, send_reply, send_result_raw, standalone_xml};
use super::xep0163_pep::{self, may_access};
use super::{IqReply, IqRequest};
use crate::core::Core;
use crate::db::Record;
use crate::error::{ErrorType, StanzaCondition, StanzaError};
use crate::limits::{CAP_PEP_ITEM_BYTES, CAP_PEP_NAME_BYTES};
use crate::personal::{AccessModel, NodeConfig, PepNode, PersonalChange, SendLast};
use crate::xml::Element;
use crate::xml::escape::escape_attr;

pub const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
pub const NS_PUBSUB_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
pub const NS_PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
pub const NS_PUBSUB_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
pub const FORM_PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";
pub const FORM_NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";

/// Why a pubsub request failed, mapped to XEP-0060's error conditions in [`reply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PubsubError {
    /// §7.1.3.3: no `node` attribute (instant nodes are not offered).
    NodeRequired,
    /// §7.1.3.6 / §7.1.3.5: no item, or an item without exactly one payload element.
    ItemRequired,
    InvalidPayload,
    /// §7.1.3.4: an item over the size bound.
    PayloadTooBig,
    /// The account's personal data bound or node count would be exceeded.
    Quota,
    /// §7.1.5: publish-options that do not match the node's configuration.
    PreconditionNotMet,
    /// The node (or item) does not exist.
    NotFound,
    /// Only the owner may do this.
    Forbidden,
    /// §8.1.3 / §8.2.5: a configuration value this service does not accept.
    BadConfig,
    /// §8.1.3: the node already exists.
    Exists,
    /// §6.5.9: presence access model and no subscription.
    PresenceRequired,
    /// §6.5.9 (whitelist): not on the list.
    ClosedNode,
    /// Something this subset does not offer (`unsupported` feature named).
    Unsupported(&'static str),
}

/// Answers a request with the wire form of `e`.
pub fn reply(core: &mut Core, req: &IqRequest, e: PubsubError) -> IqReply {
    use StanzaCondition as C;
    let (cond, etype, app): (C, ErrorType, Option<&str>) = match e {
        PubsubError::NodeRequired => (C::BadRequest, ErrorType::Modify, Some("nodeid-required")),
        PubsubError::ItemRequired => (C::BadRequest, ErrorType::Modify, Some("item-required")),
        PubsubError::InvalidPayload => (C::BadRequest, ErrorType::Modify, Some("invalid-payload")),
        PubsubError::PayloadTooBig => {
            (C::NotAcceptable, ErrorType::Modify, Some("payload-too-big"))
        }
        PubsubError::Quota => (C::ResourceConstraint, ErrorType::Wait, None),
        PubsubError::PreconditionNotMet => {
            (C::Conflict, ErrorType::Cancel, Some("precondition-not-met"))
        }
        PubsubError::NotFound => (C::ItemNotFound, ErrorType::Cancel, None),
        PubsubError::Forbidden => (C::Forbidden, ErrorType::Auth, None),
        PubsubError::BadConfig => (
            C::NotAcceptable,
            ErrorType::Modify,
            Some("unsupported-access-model"),
        ),
        PubsubError::Exists => (C::Conflict, ErrorType::Cancel, None),
        PubsubError::PresenceRequired => (
            C::NotAuthorized,
            ErrorType::Auth,
            Some("presence-subscription-required"),
        ),
        PubsubError::ClosedNode => (C::NotAllowed, ErrorType::Cancel, Some("closed-node")),
        PubsubError::Unsupported(_) => (
            C::FeatureNotImplemented,
            ErrorType::Cancel,
            Some("unsupported"),
        ),
    };
    let mut err = StanzaError::new(cond).with_type(etype);
    if e == PubsubError::Quota {
        err = err.with_text("the account's personal data is at its limit");
    }
    match (e, app) {
        (PubsubError::Unsupported(feature), _) => {
            // §5.x: `<unsupported feature='…'/>` names what is missing.
            send_reply(core, req, "error", |out| {
                out.extend_from_slice(b"><error type='cancel'><feature-not-implemented xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><unsupported xmlns='http://jabber.org/protocol/pubsub#errors' feature='");
                escape_attr(out, feature);
                out.extend_from_slice(b"'/></error></iq>");
            });
            IqReply::Done
        }
        (_, Some(app)) => reply_error_app(core, req, err, app, NS_PUBSUB_ERRORS),
        (_, None) => IqReply::Error(err),
    }
}

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

/// The value `pubsub#max_items` asks for, normalised: `max` is the server's bound
/// (XEP-0060 §16.4.4), numbers are capped to it, and at least one item is kept.
fn max_items_value(s: &str, limit: usize) -> Option<u32> {
    let limit = u32::try_from(limit).unwrap_or(u32::MAX);
    if s == "max" {
        return Some(limit);
    }
    let n: u64 = s.parse().ok()?;
    Some(u32::try_from(n).unwrap_or(u32::MAX).clamp(1, limit))
}

/// Applies submitted configuration fields. Fields this service does not keep are
/// ignored; a value it cannot honour is an error.
pub fn apply_fields(
    config: &mut NodeConfig,
    fields: &[(String, Vec<String>)],
    max_items_limit: usize,
) -> Result<(), PubsubError> {
    for (var, values) in fields {
        let v = values.first().map(String::as_str).unwrap_or("");
        let bad = PubsubError::BadConfig;
        match var.as_str() {
            "pubsub#access_model" => config.access_model = AccessModel::parse(v).ok_or(bad)?,
            "pubsub#max_items" => {
                config.max_items = max_items_value(v, max_items_limit).ok_or(bad)?
            }
            "pubsub#persist_items" => {
                config.persist_items = data_forms::parse_bool(v).ok_or(bad)?
            }
            "pubsub#send_last_published_item" => {
                config.send_last = SendLast::parse(v).ok_or(bad)?
            }
            "pubsub#notify_retract" => {
                config.notify_retract = data_forms::parse_bool(v).ok_or(bad)?
            }
            "pubsub#notify_delete" => {
                config.notify_delete = data_forms::parse_bool(v).ok_or(bad)?
            }
            "pubsub#deliver_payloads" => {
                config.deliver_payloads = data_forms::parse_bool(v).ok_or(bad)?
            }
            "pubsub#title" => {
                config.title =
                    Some(v.chars().take(256).collect()).filter(|t: &String| !t.is_empty())
            }
            _ => {}
        }
    }
    Ok(())
}

/// XEP-0060 §7.1.5 / XEP-0223: every option the publisher names must already hold.
/// Options this service does not keep cannot be checked and are not held against it.
pub fn preconditions_hold(
    config: &NodeConfig,
    fields: &[(String, Vec<String>)],
    max_items_limit: usize,
) -> bool {
    fields.iter().all(|(var, values)| {
        if var == "FORM_TYPE" {
            return true;
        }
        let mut wanted = config.clone();
        match apply_fields(
            &mut wanted,
            std::slice::from_ref(&(var.clone(), values.clone())),
            max_items_limit,
        ) {
            Ok(()) => wanted == *config,
            Err(_) => false,
        }
    })
}

/// The node configuration form (§8.2.1), `form` to fill in or `result`.
pub fn config_form(config: &NodeConfig, kind: &str, max_limit: usize) -> Element {
    let b = |v: bool| if v { "1" } else { "0" };
    let max = if config.max_items as usize >= max_limit {
        "max".to_string()
    } else {
        config.max_items.to_string()
    };
    data_forms::new_form(kind, FORM_NODE_CONFIG)
        .with_child(data_forms::list_field(
            "pubsub#access_model",
            config.access_model.as_str(),
            &["open", "presence", "whitelist"],
        ))
        .with_child(data_forms::field(
            "pubsub#max_items",
            Some("text-single"),
            &[&max],
        ))
        .with_child(data_forms::field(
            "pubsub#persist_items",
            Some("boolean"),
            &[b(config.persist_items)],
        ))
        .with_child(data_forms::list_field(
            "pubsub#send_last_published_item",
            config.send_last.as_str(),
            &["never", "on_sub", "on_sub_and_presence"],
        ))
        .with_child(data_forms::field(
            "pubsub#notify_retract",
            Some("boolean"),
            &[b(config.notify_retract)],
        ))
        .with_child(data_forms::field(
            "pubsub#notify_delete",
            Some("boolean"),
            &[b(config.notify_delete)],
        ))
        .with_child(data_forms::field(
            "pubsub#deliver_payloads",
            Some("boolean"),
            &[b(config.deliver_payloads)],
        ))
        .with_child(data_forms::field(
            "pubsub#title",
            Some("text-single"),
            &[config.title.as_deref().unwrap_or("")],
        ))
}

/// Fields of the first data form inside `parent` whose FORM_TYPE is `form_type` (or
/// that has none), without FORM_TYPE itself.
fn submitted(parent: Option<&Element>, form_type: &str) -> Vec<(String, Vec<String>)> {
    let Some(x) = parent.and_then(data_forms::form_in) else {
        return Vec::new();
    };
    if x.attr("type") == Some("cancel") {
        return Vec::new();
    }
    match data_forms::form_type(x) {
        Some(ft) if ft != form_type => Vec::new(),
        _ => data_forms::fields(x)
            .into_iter()
            .filter(|(v, _)| v != "FORM_TYPE")
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------
// Operations used by the handlers and by conversions (XEP-0398, XEP-0402)
// ---------------------------------------------------------------------------------------

fn check_name(s: &str) -> Result<(), PubsubError> {
    if s.is_empty() || s.len() > CAP_PEP_NAME_BYTES {
        return Err(PubsubError::NodeRequired);
    }
    Ok(())
}

/// Publishes `payload` as item `id` of `owner`'s `node`, creating the node with
/// `create_config` if needed, and notifies. Returns the id.
pub fn publish_item(
    core: &mut Core,
    owner: &str,
    node: &str,
    id: &str,
    payload: String,
    create_config: NodeConfig,
) -> Result<(), PubsubError> {
    check_name(node)?;
    if id.is_empty() || id.len() > CAP_PEP_NAME_BYTES {
        return Err(PubsubError::ItemRequired);
    }
    if payload.len() > CAP_PEP_ITEM_BYTES {
        return Err(PubsubError::PayloadTooBig);
    }
    let limits = &core.cfg.limits;
    let Some(user) = core.db.user(owner) else {
        return Err(PubsubError::NotFound);
    };
    let personal = &user.personal;
    let existing = personal.nodes.get(node);
    if existing.is_none() && personal.nodes.len() >= limits.max_pep_nodes {
        return Err(PubsubError::Quota);
    }
    let replaced = existing
        .and_then(|n| n.item(id))
        .map_or(0, |i| 48 + i.id.len() + i.payload.len());
    let grows = (48
        + id.len()
        + payload.len()
        + if existing.is_none() {
            64 + node.len()
        } else {
            0
        })
    .saturating_sub(replaced);
    if personal.footprint() + grows > limits.max_personal_bytes {
        return Err(PubsubError::Quota);
    }
    if existing.is_none() {
        core.persist(Record::Personal {
            user: owner.to_string(),
            change: PersonalChange::NodeSet {
                node: node.to_string(),
                config: create_config,
            },
        });
    }
    core.persist(Record::Personal {
        user: owner.to_string(),
        change: PersonalChange::ItemSet {
            node: node.to_string(),
            id: id.to_string(),
            payload: payload.clone(),
        },
    });
    xep0163_pep::notify_item(core, owner, node, id, &payload);
    Ok(())
}

/// Retracts item `id` of `owner`'s `node`, notifying when `notify`.
pub fn retract_item(
    core: &mut Core,
    owner: &str,
    node: &str,
    id: &str,
    notify: bool,
) -> Result<(), PubsubError> {
    let found = core
        .db
        .user(owner)
        .and_then(|u| u.personal.nodes.get(node))
        .map(|n| (n.item(id).is_some(), n.config.notify_retract));
    match found {
        None | Some((false, _)) => Err(PubsubError::NotFound),
        Some((true, notify_retract)) => {
            core.persist(Record::Personal {
                user: owner.to_string(),
                change: PersonalChange::ItemDelete {
                    node: node.to_string(),
                    id: id.to_string(),
                },
            });
            if notify || notify_retract {
                xep0163_pep::notify_retract(core, owner, node, id);
            }
            Ok(())
        }
    }
}

/// The node, if it exists.
pub fn node<'a>(core: &'a Core, owner: &str, node: &str) -> Option<&'a PepNode> {
    core.db.user(owner)?.personal.nodes.get(node)
}

// ---------------------------------------------------------------------------------------
// Handlers (`<pubsub/>` and `<pubsub xmlns='…#owner'/>` iqs to an account)
// ---------------------------------------------------------------------------------------

fn first_child<'a>(req: &'a IqRequest, ns: &str) -> Option<&'a Element> {
    req.payload.elements().find(|e| e.ns == ns)
}

/// `<iq type='get'><pubsub xmlns='…pubsub'>`: items, subscriptions, affiliations.
pub fn pubsub_get(core: &mut Core, req: &IqRequest) -> IqReply {
    let Some((owner, is_owner)) = super::state::owner_of(core, req) else {
        return IqReply::Error(StanzaError::new(StanzaCondition::ItemNotFound));
    };
    let Some(op) = first_child(req, NS_PUBSUB) else {
        return IqReply::Error(StanzaError::new(StanzaCondition::BadRequest));
    };
    match op.name.as_str() {
        "items" => items(core, req, &owner, op),
        // §5.6 / §5.7: no subscriptions or affiliations here but the owner's own.
        "subscriptions" => {
            send_result_raw(
                core,
                req,
                b"<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscriptions/></pubsub>",
            );
            IqReply::Done
        }
        "affiliations" => {
            let mut body =
                b"<pubsub xmlns='http://jabber.org/protocol/pubsub'><affiliations>".to_vec();
            if is_owner {
                let nodes: Vec<String> = core
                    .db
                    .user(&owner)
                    .map(|u| u.personal.nodes.keys().cloned().collect())
                    .unwrap_or_default();
                for n in nodes {
                    body.extend_from_slice(b"<affiliation node='");
                    escape_attr(&mut body, &n);
                    body.extend_from_slice(b"' affiliation='owner'/>");
                }
            }
            body.extend_from_slice(b"</affiliations></pubsub>");
            send_result_raw(core, req, &body);
            IqReply::Done
        }
        "default" => {
            let max = core.cfg.limits.max_pep_items_per_node;
            let form = config_form(&NodeConfig::default(), "form", max);
            IqReply::Result(Some(
                Element::new("pubsub", NS_PUBSUB)
                    .with_child(Element::new("default", NS_PUBSUB).with_child(form)),
            ))
        }
        "options" => reply(core, req, PubsubError::Unsupported("subscription-options")),
        _ => IqReply::Error(StanzaError::new(StanzaCondition::FeatureNotImplemented)),
    }
}

/// §6.5: retrieve items, all (newest `max_items`) or by id.
fn items(core: &mut Core, req: &IqRequest, owner: &str, op: &Element) -> IqReply {
    let Some(name) = op.attr("node").map(str::to_string) else {
        return reply(core, req, PubsubError::NodeRequired);
    };
    let Some(n) = node(core, owner, &name) else {
        return reply(core, req, PubsubError::NotFound);
    };
    if let Err(e) = may_access(core, owner, &req.from, n.config.access_model) {
        return reply(core, req, e);
    }
    let wanted: Vec<&str> = op
        .elements()
        .filter(|i| i.name == "item" && i.ns == NS_PUBSUB)
        .filter_map(|i| i.attr("id"))
        .collect();
    let max: Option<usize> = op.attr("max_items").and_then(|m| m.parse().ok());
    let mut body = b"<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='".to_vec();
    escape_attr(&mut body, &name);
    body.extend_from_slice(b"'>");
    let chosen: Vec<&crate::personal::PepItem> = if wanted.is_empty() {
        let skip = max.map_or(0, |m| n.items.len().saturating_sub(m));
        n.items.iter().skip(skip).collect()
    } else {
        n.items
            .iter()
            .filter(|i| wanted.contains(&i.id.as_str()))
            .collect()
    };
    for item in chosen {
        body.extend_from_slice(b"<item id='");
        escape_attr(&mut body, &item.id);
        body.extend_from_slice(b"'>");
        body.extend_from_slice(item.payload.as_bytes());
        body.extend_from_slice(b"</item>");
    }
    body.extend_from_slice(b"</items></pubsub>");
    send_result_raw(core, req, &body);
    IqReply::Done
}

/// `<iq type='set'><pubsub xmlns='…pubsub'>`: publish, retract, create.
pub fn pubsub_set(core: &mut Core, req: &IqRequest) -> IqReply {
    let Some((owner, is_owner)) = super::state::owner_of(core, req) else {
        return IqReply::Error(StanzaError::new(StanzaCondition::ItemNotFound));
    };
    let Some(op) = first_child(req, NS_PUBSUB) else {
        return IqReply::Error(StanzaError::new(StanzaCondition::BadRequest));
    };
    match op.name.as_str() {
        "subscribe" | "unsubscribe" => {
            return reply(core, req, PubsubError::Unsupported("subscribe"));
        }
        "options" => return reply(core, req, PubsubError::Unsupported("subscription-options")),
        _ => {}
    }
    if !is_owner {
        // XEP-0163 §4.3: only the account owner publishes to its PEP service.
        return reply(core, req, PubsubError::Forbidden);
    }
    match op.name.as_str() {
        "publish" => {
            let options = req.payload.child("publish-options", NS_PUBSUB);
            publish(core, req, &owner, op, options)
        }
        "retract" => retract(core, req, &owner, op),
        "create" => {
            let configure = req.payload.child("configure", NS_PUBSUB);
            create(core, req, &owner, op, configure)
        }
        _ => IqReply::Error(StanzaError::new(StanzaCondition::FeatureNotImplemented)),
    }
}

/// §7.1: publish one item, with §7.1.5 publish-options.
fn publish(
    core: &mut Core,
    req: &IqRequest,
    owner: &str,
    op: &Element,
    options: Option<&Element>,
) -> IqReply {
    let Some(name) = op.attr("node").map(str::to_string) else {
        return reply(core, req, PubsubError::NodeRequired);
    };
    let mut items = op
        .elements()
        .filter(|i| i.name == "item" && i.ns == NS_PUBSUB);
    let (Some(item), None) = (items.next(), items.next()) else {
        return reply(core, req, PubsubError::ItemRequired);
    };
    let mut payloads = item.elements();
    let (Some(payload), None) = (payloads.next(), payloads.next()) else {
        return reply(core, req, PubsubError::InvalidPayload);
    };
    let id = match item.attr("id").filter(|i| !i.is_empty()) {
        Some(i) => i.to_string(),
        None => core.random_id(),
    };
    let max_limit = core.cfg.limits.max_pep_items_per_node;
    let fields = submitted(options, FORM_PUBLISH_OPTIONS);
    let create_config = match node(core, owner, &name) {
        Some(n) => {
            if !preconditions_hold(&n.config, &fields, max_limit) {
                return reply(core, req, PubsubError::PreconditionNotMet);
            }
            n.config.clone()
        }
        None => {
            let mut c = NodeConfig::default();
            if let Err(e) = apply_fields(&mut c, &fields, max_limit) {
                return reply(core, req, e);
            }
            c
        }
    };
    let xml = standalone_xml(payload);
    if let Err(e) = publish_item(core, owner, &name, &id, xml, create_config) {
        return reply(core, req, e);
    }
    super::xep0398_avatar_conversion::after_publish(core, owner, &name, &id);
    IqReply::Result(Some(
        Element::new("pubsub", NS_PUBSUB).with_child(
            Element::new("publish", NS_PUBSUB)
                .with_attr("node", &name)
                .with_child(Element::new("item", NS_PUBSUB).with_attr("id", &id)),
        ),
    ))
}

/// §7.2: retract items.
fn retract(core: &mut Core, req: &IqRequest, owner: &str, op: &Element) -> IqReply {
    let Some(name) = op.attr("node").map(str::to_string) else {
        return reply(core, req, PubsubError::NodeRequired);
    };
    let notify = op
        .attr("notify")
        .and_then(data_forms::parse_bool)
        .unwrap_or(false);
    let ids: Vec<String> = op
        .elements()
        .filter(|i| i.name == "item" && i.ns == NS_PUBSUB)
        .filter_map(|i| i.attr("id").map(str::to_string))
        .collect();
    if ids.is_empty() {
        return reply(core, req, PubsubError::ItemRequired);
    }
    if node(core, owner, &name).is_none() {
        return reply(core, req, PubsubError::NotFound);
    }
    for id in ids {
        if let Err(e) = retract_item(core, owner, &name, &id, notify) {
            return reply(core, req, e);
        }
    }
    IqReply::Result(None)
}

/// §8.1: create a node, optionally configured.
fn create(
    core: &mut Core,
    req: &IqRequest,
    owner: &str,
    op: &Element,
    configure: Option<&Element>,
) -> IqReply {
    let Some(name) = op.attr("node").map(str::to_string) else {
        return reply(core, req, PubsubError::NodeRequired);
    };
    if check_name(&name).is_err() {
        return reply(core, req, PubsubError::NodeRequired);
    }
    if node(core, owner, &name).is_some() {
        return reply(core, req, PubsubError::Exists);
    }
    let max_limit = core.cfg.limits.max_pep_items_per_node;
    let mut config = NodeConfig::default();
    if let Err(e) = apply_fields(
        &mut config,
        &submitted(configure, FORM_NODE_CONFIG),
        max_limit,
    ) {
        return reply(core, req, e);
    }
    let (count, bytes) = core
        .db
        .user(owner)
        .map_or((0, 0), |u| (u.personal.nodes.len(), u.personal.footprint()));
    if count >= core.cfg.limits.max_pep_nodes
        || bytes + 64 + name.len() > core.cfg.limits.max_personal_bytes
    {
        return reply(core, req, PubsubError::Quota);
    }
    core.persist(Record::Personal {
        user: owner.to_string(),
        change: PersonalChange::NodeSet { node: name, config },
    });
    IqReply::Result(None)
}

/// `<iq><pubsub xmlns='…#owner'>` get: configure, default, affiliations, subscriptions.
pub fn owner_get(core: &mut Core, req: &IqRequest) -> IqReply {
    let Some((owner, true)) = super::state::owner_of(core, req) else {
        return reply(core, req, PubsubError::Forbidden);
    };
    let Some(op) = first_child(req, NS_PUBSUB_OWNER) else {
        return IqReply::Error(StanzaError::new(StanzaCondition::BadRequest));
    };
    let max_limit = core.cfg.limits.max_pep_items_per_node;
    let name = op.attr("node").map(str::to_string);
    match op.name.as_str() {
        "default" => IqReply::Result(Some(Element::new("pubsub", NS_PUBSUB_OWNER).with_child(
            Element::new("default", NS_PUBSUB_OWNER).with_child(config_form(
                &NodeConfig::default(),
                "form",
                max_limit,
            )),
        ))),
        "configure" | "affiliations" | "subscriptions" => {
            let Some(name) = name else {
                return reply(core, req, PubsubError::NodeRequired);
            };
            let Some(n) = node(core, &owner, &name) else {
                return reply(core, req, PubsubError::NotFound);
            };
            let inner = match op.name.as_str() {
                "configure" => Element::new("configure", NS_PUBSUB_OWNER)
                    .with_attr("node", &name)
                    .with_child(config_form(&n.config, "form", max_limit)),
                "affiliations" => Element::new("affiliations", NS_PUBSUB_OWNER)
                    .with_attr("node", &name)
                    .with_child(
                        Element::new("affiliation", NS_PUBSUB_OWNER)
                            .with_attr("jid", req.from.bare_str())
                            .with_attr("affiliation", "owner"),
                    ),
                _ => Element::new("subscriptions", NS_PUBSUB_OWNER).with_attr("node", &name),
            };
            IqReply::Result(Some(
                Element::new("pubsub", NS_PUBSUB_OWNER).with_child(inner),
            ))
        }
        _ => IqReply::Error(StanzaError::new(StanzaCondition::FeatureNotImplemented)),
    }
}

/// `<iq type='set'><pubsub xmlns='…#owner'>`: configure, delete, purge.
pub fn owner_set(core: &mut Core, req: &IqRequest) -> IqReply {
    let Some((owner, true)) = super::state::owner_of(core, req) else {
        return reply(core, req, PubsubError::Forbidden);
    };
    let Some(op) = first_child(req, NS_PUBSUB_OWNER) else {
        return IqReply::Error(StanzaError::new(StanzaCondition::BadRequest));
    };
    let Some(name) = op.attr("node").map(str::to_string) else {
        return reply(core, req, PubsubError::NodeRequired);
    };
    let Some(n) = node(core, &owner, &name) else {
        return reply(core, req, PubsubError::NotFound);
    };
    let old = n.config.clone();
    match op.name.as_str() {
        "configure" => {
            let mut config = old;
            let max_limit = core.cfg.limits.max_pep_items_per_node;
            if let Err(e) = apply_fields(
                &mut config,
                &submitted(Some(op), FORM_NODE_CONFIG),
                max_limit,
            ) {
                return reply(core, req, e);
            }
            core.persist(Record::Personal {
                user: owner,
                change: PersonalChange::NodeSet { node: name, config },
            });
            IqReply::Result(None)
        }
        "delete" => {
            if old.notify_delete {
                xep0163_pep::notify_node_event(core, &owner, &name, "delete");
            }
            core.persist(Record::Personal {
                user: owner,
                change: PersonalChange::NodeDelete { node: name },
            });
            IqReply::Result(None)
        }
        "purge" => {
            core.persist(Record::Personal {
                user: owner.clone(),
                change: PersonalChange::NodePurge { node: name.clone() },
            });
            xep0163_pep::notify_node_event(core, &owner, &name, "purge");
            IqReply::Result(None)
        }
        _ => IqReply::Error(StanzaError::new(StanzaCondition::FeatureNotImplemented)),
    }
}

// ---------------------------------------------------------------------------------------
// Notifications
// ---------------------------------------------------------------------------------------

/// Writes `<message type='headline'><event xmlns='…#event'>INNER</event></message>`
/// (§7.1.2.1).
pub fn write_event(out: &mut Vec<u8>, from: &str, to: &str, id: &str, inner: &[u8]) {
    out.extend_from_slice(b"<message from='");
    escape_attr(out, from);
    out.extend_from_slice(b"' to='");
    escape_attr(out, to);
    out.extend_from_slice(b"' type='headline' id='");
    escape_attr(out, id);
    out.extend_from_slice(b"'><event xmlns='http://jabber.org/protocol/pubsub#event'>");
    out.extend_from_slice(inner);
    out.extend_from_slice(b"</event></message>");
}

/// `<items node='N'><item id='X' publisher='P'>PAYLOAD</item></items>`.
pub fn items_event(node: &str, id: &str, publisher: &str, payload: Option<&str>) -> Vec<u8> {
    let mut v = Vec::with_capacity(64 + payload.map_or(0, str::len));
    v.extend_from_slice(b"<items node='");
    escape_attr(&mut v, node);
    v.extend_from_slice(b"'><item id='");
    escape_attr(&mut v, id);
    v.extend_from_slice(b"' publisher='");
    escape_attr(&mut v, publisher);
    match payload {
        Some(p) => {
            v.extend_from_slice(b"'>");
            v.extend_from_slice(p.as_bytes());
            v.extend_from_slice(b"</item></items>");
        }
        None => v.extend_from_slice(b"'/></items>"),
    }
    v
}

/// `<items node='N'><retract id='X'/></items>`.
pub fn retract_event(node: &str, id: &str) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(b"<items node='");
    escape_attr(&mut v, node);
    v.extend_from_slice(b"'><retract id='");
    escape_attr(&mut v, id);
    v.extend_from_slice(b"'/></items>");
    v
}

/// `<delete node='N'/>` or `<purge node='N'/>`.
pub fn node_event(what: &str, node: &str) -> Vec<u8> {
    let mut v = Vec::new();
    v.push(b'<');
    v.extend_from_slice(what.as_bytes());
    v.extend_from_slice(b" node='");
    escape_attr(&mut v, node);
    v.extend_from_slice(b"'/>");
    v
}

/// Text of a stored payload, for modules that read items (bookmarks, avatars).
pub fn stored_payload(core: &Core, owner: &str, node_name: &str, id: &str) -> Option<Element> {
    parse_stored(&node(core, owner, node_name)?.item(id)?.payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(var: &str, v: &str) -> (String, Vec<String>) {
        (var.into(), vec![v.into()])
    }

    #[test]
    fn max_items_normalises_max_and_caps() {
        assert_eq!(max_items_value("max", 128), Some(128));
        assert_eq!(max_items_value("1000", 128), Some(128));
        assert_eq!(max_items_value("0", 128), Some(1));
        assert_eq!(max_items_value("x", 128), None);
    }

    #[test]
    fn preconditions_compare_known_options_only() {
        let c = NodeConfig::default();
        assert!(preconditions_hold(
            &c,
            &[f("pubsub#access_model", "presence")],
            128
        ));
        assert!(!preconditions_hold(
            &c,
            &[f("pubsub#access_model", "open")],
            128
        ));
        assert!(!preconditions_hold(
            &c,
            &[f("pubsub#access_model", "roster")],
            128
        ));
        assert!(preconditions_hold(
            &c,
            &[f("pubsub#persist_items", "true")],
            128
        ));
        assert!(!preconditions_hold(
            &c,
            &[f("pubsub#max_items", "max")],
            128
        ));
        let mut open_max = NodeConfig::default();
        apply_fields(
            &mut open_max,
            &[
                f("pubsub#access_model", "open"),
                f("pubsub#max_items", "max"),
            ],
            128,
        )
        .unwrap();
        assert!(preconditions_hold(
            &open_max,
            &[
                f("pubsub#max_items", "max"),
                f("pubsub#access_model", "open")
            ],
            128
        ));
        assert!(preconditions_hold(
            &c,
            &[f("pubsub#unknown_option", "x")],
            128
        ));
        assert_eq!(
            apply_fields(&mut open_max, &[f("pubsub#access_model", "authorize")], 128),
            Err(PubsubError::BadConfig)
        );
    }

    #[test]
    fn events_are_well_formed() {
        let e = items_event("n'", "i<", "a@l", Some("<x xmlns='u'/>"));
        let xml = String::from_utf8(e).unwrap();
        assert_eq!(
            xml,
            "<items node='n&apos;'><item id='i&lt;' publisher='a@l'><x xmlns='u'/></item></items>"
        );
    }
}
