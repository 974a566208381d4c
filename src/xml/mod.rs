//! XML for XMPP streams: an incremental framer over `xmlparser` that cuts a byte stream
//! into a stream header and complete, validated top-level elements; a small owned element
//! tree for the stanzas the server itself must read; escaping for what it writes.

pub mod children;
pub mod element;
pub mod escape;
pub mod framer;

pub use children::RawChild;
pub use element::{Element, Node};
pub use framer::{Frame, FrameBuffers, FrameError, FrameLimits, Framer, RawElement, StreamHeader};

pub const NS_STREAM: &str = "http://etherx.jabber.org/streams";
pub const NS_CLIENT: &str = "jabber:client";
pub const NS_SERVER: &str = "jabber:server";
pub const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";
