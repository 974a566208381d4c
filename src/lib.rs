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
//!
//! The protocol core and the storage code must not panic on input: clippy denies
//! `unwrap`/`expect` there (tests are exempt).

#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
pub mod archive;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
pub mod c2s;
pub mod cli;
// Issue 7: `xmppd invite` (shell side).
pub mod cli_invite;
pub mod config;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
pub mod core;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
pub mod datetime;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
pub mod db;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
pub mod error;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
pub mod jid;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
pub mod limits;
pub mod logging;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
pub mod message;
pub mod net;
// Issue 7: PEP, vCard, private XML, block list and invites as plain data.
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
pub mod personal;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
pub mod presence;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
pub mod roster;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
pub mod router;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
pub mod sasl;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
pub mod stanza;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
pub mod storage;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
pub mod time;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
pub mod xep;
#[cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
pub mod xml;
