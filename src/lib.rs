//! xmppd: a small XMPP server for home routers and Raspberry Pi-class boards.
//!
//! Layers, from bytes to features (see `../shared/STYLE.md`):
//! - [`xml`] frames a byte stream into a stream header and validated top-level elements;
//! - [`stanza`] gives typed views of stanzas and builds replies and errors;
//! - [`c2s`] is the per-connection state machine: stream negotiation, STARTTLS, SASL
//!   ([`sasl`]), resource binding;
//! - [`core`] owns every connection, the routing table ([`router`]) and the account state
//!   ([`db`]); it routes stanzas and runs presence and rosters ([`roster`], [`presence`]);
//! - [`xep`] holds one module per protocol extension, registered in one table.
//!
//! All of the above is sans-I/O: it takes bytes and time ([`time`]) in and returns bytes
//! and actions. The smol shell ([`net`], [`storage`], [`cli`]) owns sockets, TLS, files,
//! timers and signals. Every capacity and timeout is in [`limits`]; every wire error
//! condition in [`error`].

pub mod c2s;
pub mod cli;
pub mod config;
pub mod core;
pub mod db;
pub mod error;
pub mod jid;
pub mod limits;
pub mod logging;
pub mod net;
pub mod presence;
pub mod roster;
pub mod router;
pub mod sasl;
pub mod stanza;
pub mod storage;
pub mod time;
pub mod xep;
pub mod xml;
