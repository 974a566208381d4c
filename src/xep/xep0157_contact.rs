//! XEP-0157 Contact Addresses for XMPP Services 1.1, published as a XEP-0128 1.0
//! extended service discovery form in the server's disco#info. The addresses come from
//! the `[contact]` section of the config file; with none configured no form is added.

use super::Module;
use super::data_forms::{self, NS_DATA};
use super::hooks::Hooks;
use crate::core::Core;
use crate::xml::Element;

pub const FORM_SERVERINFO: &str = "http://jabber.org/network/serverinfo";

pub static MODULE: Module = Module {
    name: "contact",
    spec: "XEP-0157 1.1 in a XEP-0128 1.0 form",
    server_features: &[],
    account_features: &[],
    stream_features: &[],
    iq: &[],
};

pub static HOOKS: Hooks = Hooks {
    name: "contact",
    server_info_forms: Some(serverinfo_form),
    ..Hooks::NONE
};

fn serverinfo_form(core: &Core) -> Vec<Element> {
    let contact = &core.ext.services.contact;
    if contact.iter().all(|(_, uris)| uris.is_empty()) {
        return Vec::new();
    }
    let mut x = data_forms::new_form("result", FORM_SERVERINFO);
    for (var, uris) in contact {
        if uris.is_empty() {
            continue;
        }
        let mut f = Element::new("field", NS_DATA)
            .with_attr("var", var)
            .with_attr("type", "list-multi");
        for u in uris {
            f = f.with_child(Element::new("value", NS_DATA).with_text(u));
        }
        x = x.with_child(f);
    }
    vec![x]
}
