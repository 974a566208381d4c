//! The few pieces of XEP-0004 Data Forms the server reads and writes: submitted fields
//! (publish-options, node configuration) and result forms (node configuration, XEP-0128
//! extended disco info).

use crate::xml::Element;

pub const NS_DATA: &str = "jabber:x:data";

/// A submitted form's fields in order: `(var, values)`. `FORM_TYPE` is included.
pub fn fields(x: &Element) -> Vec<(String, Vec<String>)> {
    x.elements()
        .filter(|f| f.name == "field" && f.ns == NS_DATA)
        .filter_map(|f| {
            let var = f.attr("var")?.to_string();
            let values = f
                .elements()
                .filter(|v| v.name == "value" && v.ns == NS_DATA)
                .map(|v| v.text())
                .collect();
            Some((var, values))
        })
        .collect()
}

/// The first `<x xmlns='jabber:x:data'/>` child of `parent`.
pub fn form_in(parent: &Element) -> Option<&Element> {
    parent.child("x", NS_DATA)
}

/// The value of `FORM_TYPE`, if the form has one.
pub fn form_type(x: &Element) -> Option<String> {
    fields(x)
        .into_iter()
        .find(|(v, _)| v == "FORM_TYPE")
        .and_then(|(_, vals)| vals.into_iter().next())
}

/// XEP-0004 §3.3: booleans are "0"/"1"/"false"/"true".
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// Builds a form of `kind` (`form` or `result`) with a hidden `FORM_TYPE`.
pub fn new_form(kind: &str, form_type: &str) -> Element {
    Element::new("x", NS_DATA)
        .with_attr("type", kind)
        .with_child(field("FORM_TYPE", Some("hidden"), &[form_type]))
}

/// A field with its values.
pub fn field(var: &str, ftype: Option<&str>, values: &[&str]) -> Element {
    let mut f = Element::new("field", NS_DATA).with_attr("var", var);
    if let Some(t) = ftype {
        f.set_attr("type", t);
    }
    for v in values {
        f = f.with_child(Element::new("value", NS_DATA).with_text(v));
    }
    f
}

/// A `list-single` field with its options.
pub fn list_field(var: &str, value: &str, options: &[&str]) -> Element {
    let mut f = field(var, Some("list-single"), &[value]);
    for o in options {
        f = f.with_child(
            Element::new("option", NS_DATA).with_child(Element::new("value", NS_DATA).with_text(o)),
        );
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{NS_CLIENT, RawElement};

    #[test]
    fn reads_submitted_fields_and_form_type() {
        let xml = "<x xmlns='jabber:x:data' type='submit'>\
            <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
            <field var='pubsub#access_model'><value>open</value></field>\
            <field><value>no var</value></field></x>";
        let raw = RawElement::from_xml(xml, NS_CLIENT).unwrap();
        let x = Element::parse(&raw, NS_CLIENT).unwrap();
        let f = fields(&x);
        assert_eq!(f.len(), 2);
        assert_eq!(f[1], ("pubsub#access_model".into(), vec!["open".into()]));
        assert_eq!(
            form_type(&x).as_deref(),
            Some("http://jabber.org/protocol/pubsub#publish-options")
        );
        assert_eq!(parse_bool("true"), Some(true));
        assert_eq!(parse_bool("yes"), None);
    }

    #[test]
    fn builds_forms() {
        let x = new_form("result", "urn:t").with_child(list_field("a", "b", &["b", "c"]));
        let xml = x.to_xml("");
        assert!(xml.contains("<field var='FORM_TYPE' type='hidden'><value>urn:t</value></field>"));
        assert!(xml.contains("<option><value>c</value></option>"), "{xml}");
    }
}
