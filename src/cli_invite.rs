//! `xmppd invite`: makes a registration invitation (XEP-0401 account creation, redeemed
//! per XEP-0445) and prints its `xmpp:` URI and, with the `qr` feature, a QR code that an
//! app like Conversations scans. Like `xmppd user`, it goes through the running server's
//! control socket, or writes the store directly when no server runs.

use std::path::{Path, PathBuf};

use crate::cli::{EXIT_FAILURE, EXIT_OK, account_name, control_request, open_store, user_context};
use crate::db::Record;
use crate::limits::{CAP_INVITES, MAX_INVITE_DAYS};
use crate::net::SystemEntropy;
use crate::personal::{Invite, ServerChange};
use crate::storage::Store;
use crate::time::Entropy;
use crate::xep::xep0077_register::invite_uri;

/// 96 random bits as lowercase hex: XEP-0401 asks for a securely generated
/// alphanumeric token.
fn new_token() -> String {
    let mut b = [0u8; 12];
    SystemEntropy::new().fill(&mut b);
    crate::c2s::hex(&b)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn invite(
    user: Option<String>,
    days: u64,
    no_qr: bool,
    config: Option<&Path>,
    data_dir: Option<PathBuf>,
) -> i32 {
    let cfg = match user_context(config, data_dir) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if days == 0 || days > MAX_INVITE_DAYS {
        eprintln!("--days {days}: choose 1..={MAX_INVITE_DAYS}");
        return EXIT_FAILURE;
    }
    let account = match user
        .as_deref()
        .map(|u| account_name(u, &cfg.domain))
        .transpose()
    {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_FAILURE;
        }
    };
    let token = new_token();
    let invite = Invite {
        account: account.clone(),
        expires_unix: unix_now() + days * 86_400,
    };
    if let Err(e) = store_invite(&cfg.data_dir, &token, invite) {
        eprintln!("{e}");
        return EXIT_FAILURE;
    }
    if !cfg.register.enabled {
        eprintln!(
            "note: in-band registration is off; set [register] enabled = true in the config for this invitation to work"
        );
    }
    let uri = invite_uri(&cfg.domain, account.as_deref(), &token);
    println!("{uri}");
    if !no_qr {
        print_qr(&uri);
    }
    eprintln!("valid for {days} day(s), for one registration");
    EXIT_OK
}

fn store_invite(data_dir: &Path, token: &str, invite: Invite) -> Result<(), String> {
    match open_store(data_dir)? {
        Some((mut store, db)) => {
            if let Some(name) = &invite.account
                && (db.user(name).is_some()
                    || db
                        .server
                        .invites
                        .values()
                        .any(|i| i.account.as_deref() == Some(name.as_str())))
            {
                return Err(format!("{name}: the account exists or is already reserved"));
            }
            // Expired invitations go first, as the server does (the table stays bounded).
            let now = unix_now();
            let mut records: Vec<Record> = db
                .server
                .invites
                .iter()
                .filter(|(_, i)| i.expires_unix <= now)
                .map(|(t, _)| Record::Server {
                    change: ServerChange::InviteDelete { token: t.clone() },
                })
                .collect();
            if db.server.invites.len() - records.len() >= CAP_INVITES {
                return Err("the server holds its maximum number of unused invitations".into());
            }
            records.push(Record::Server {
                change: ServerChange::InviteSet {
                    token: token.to_string(),
                    invite,
                },
            });
            store.append(&records).map_err(|e| e.to_string())
        }
        None => {
            let mut line = format!("invite {token} {}", invite.expires_unix);
            if let Some(a) = &invite.account {
                line.push(' ');
                line.push_str(a);
            }
            control_request(data_dir, &line).map(|_| ())
        }
    }
}

#[cfg(feature = "qr")]
fn print_qr(uri: &str) {
    use qrcode::render::unicode::Dense1x2;
    match qrcode::QrCode::new(uri.as_bytes()) {
        Ok(code) => {
            // Drawn for a dark terminal (as `qrencode -t UTF8` does): light modules and
            // the quiet zone are blocks, dark modules are blanks, so a camera sees dark
            // on light.
            let text = code
                .render::<Dense1x2>()
                .dark_color(Dense1x2::Light)
                .light_color(Dense1x2::Dark)
                .quiet_zone(true)
                .build();
            println!("{text}");
        }
        Err(e) => eprintln!("no QR code: {e}"),
    }
}

#[cfg(not(feature = "qr"))]
fn print_qr(_uri: &str) {}
