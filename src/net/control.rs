//! The control socket: how `xmppd user …` changes accounts in a running server.
//!
//! The store has one writer at a time (an exclusive lock). When the server holds it, the
//! CLI sends its command here instead of touching the files, so two processes can never
//! corrupt the store. The socket lives in the 0700 data directory, so only the server's
//! user can reach it. One request line, one response: `OK …` or `ERR message`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use smol::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use smol::net::unix::{UnixListener, UnixStream};

use super::Shared;
use crate::sasl::{Credentials, ScramKeys};

use crate::limits::CONTROL_MAX_REQUEST_BYTES as MAX_REQUEST_BYTES;

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("control.sock")
}

pub fn listen(data_dir: &Path) -> io::Result<UnixListener> {
    let path = socket_path(data_dir);
    // We hold the store lock, so a socket file left here belongs to a dead server.
    let _ = std::fs::remove_file(&path);
    UnixListener::bind(&path)
}

pub fn remove_socket(data_dir: &Path) {
    let _ = std::fs::remove_file(socket_path(data_dir));
}

pub async fn serve(shared: Arc<Shared>, listener: UnixListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                smol::spawn(handle(shared.clone(), stream)).detach();
            }
            Err(e) => {
                log::warn!("control socket: {e}");
                smol::Timer::after(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

async fn handle(shared: Arc<Shared>, stream: UnixStream) {
    let mut line = String::new();
    let mut writer = stream.clone();
    let mut reader = smol::io::BufReader::new(stream.take(MAX_REQUEST_BYTES));
    if reader.read_line(&mut line).await.is_err() {
        return;
    }
    let reply = execute(&shared, line.trim_end()).await;
    let _ = writer.write_all(reply.as_bytes()).await;
    let _ = writer.flush().await;
}

async fn execute(shared: &Shared, line: &str) -> String {
    let mut parts = line.split(' ');
    let cmd = parts.next().unwrap_or("");
    let user = parts.next().unwrap_or("");
    let arg = parts.next();
    let result = {
        let mut st = shared.lock();
        match (cmd, arg) {
            ("list", _) => {
                return format!(
                    "OK\n{}",
                    st.core
                        .admin_user_list()
                        .iter()
                        .map(|u| format!("{u}\n"))
                        .collect::<String>()
                );
            }
            ("add", Some(c)) | ("passwd", Some(c)) => match decode_credentials(c) {
                Some(creds) => st.core.admin_user_set(user, creds, cmd == "add"),
                None => return "ERR malformed credentials\n".into(),
            },
            ("del", _) => st.core.admin_user_delete(user),
            // Issue 7: `invite TOKEN EXPIRES_UNIX [ACCOUNT]` (xmppd invite).
            ("invite", Some(expires)) => {
                let Ok(expires_unix) = expires.parse::<u64>() else {
                    return "ERR malformed invitation\n".into();
                };
                let invite = crate::personal::Invite {
                    account: parts.next().map(str::to_string),
                    expires_unix,
                };
                st.core.admin_invite_add(user, invite)
            }
            _ => return "ERR unknown command\n".into(),
        }
    };
    match result {
        Ok(seq) => {
            {
                let mut st = shared.lock();
                let mut scratch = Vec::new();
                shared.dispatch(&mut st, &mut scratch);
            }
            // Report success only once the change would survive a power cut.
            if shared.wait_committed(seq).await {
                log::info!("control: {cmd} {user}@{} done", shared.domain);
                "OK\n".into()
            } else {
                "ERR the server could not store the change (disk full or read-only?)\n".into()
            }
        }
        Err(e) => format!("ERR {e}\n"),
    }
}

/// `salt:iterations:sha1-stored:sha1-server:sha256-stored:sha256-server`, base64 fields.
pub fn encode_credentials(c: &Credentials) -> String {
    format!(
        "{}:{}:{}:{}:{}:{}",
        BASE64.encode(&c.salt),
        c.iterations,
        BASE64.encode(c.sha1.stored_key),
        BASE64.encode(c.sha1.server_key),
        BASE64.encode(c.sha256.stored_key),
        BASE64.encode(c.sha256.server_key)
    )
}

pub fn decode_credentials(s: &str) -> Option<Credentials> {
    let f: Vec<&str> = s.split(':').collect();
    let [salt, iter, s1, k1, s256, k256] = f.as_slice() else {
        return None;
    };
    let arr = |x: &str| BASE64.decode(x).ok();
    Some(Credentials {
        salt: arr(salt)?,
        iterations: iter.parse().ok()?,
        sha1: ScramKeys {
            stored_key: arr(s1)?.try_into().ok()?,
            server_key: arr(k1)?.try_into().ok()?,
        },
        sha256: ScramKeys {
            stored_key: arr(s256)?.try_into().ok()?,
            server_key: arr(k256)?.try_into().ok()?,
        },
    })
}

/// Client side (the CLI): sends one request to a running server and returns its reply
/// lines after `OK`, or the error message.
pub fn request(data_dir: &Path, line: &str) -> io::Result<Result<Vec<String>, String>> {
    let mut s = std::os::unix::net::UnixStream::connect(socket_path(data_dir))?;
    s.write_all(line.as_bytes())?;
    s.write_all(b"\n")?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut reader = BufReader::new(s.take(1 << 20));
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let first = first.trim_end();
    if let Some(msg) = first.strip_prefix("ERR ") {
        return Ok(Err(msg.to_string()));
    }
    if first != "OK" {
        return Err(io::Error::other(format!(
            "unexpected reply from the server: {first:?}"
        )));
    }
    let rest: Vec<String> = reader.lines().collect::<Result<_, _>>()?;
    Ok(Ok(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_round_trip() {
        let c = Credentials {
            salt: vec![1, 2, 3],
            iterations: 4096,
            sha1: ScramKeys {
                stored_key: [7; 20],
                server_key: [8; 20],
            },
            sha256: ScramKeys {
                stored_key: [9; 32],
                server_key: [10; 32],
            },
        };
        assert_eq!(decode_credentials(&encode_credentials(&c)), Some(c));
        assert_eq!(decode_credentials("a:b"), None);
    }
}
