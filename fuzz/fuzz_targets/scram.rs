//! SASL (`sasl::SaslServer`): SCRAM-SHA-1/-256 with and without `-PLUS`, and PLAIN, fed
//! arbitrary client messages, checked against an independent SCRAM client written here
//! with `ring` (RFC 5802 §3).
//!
//! Input: `[mode] ([u16 length] [message])*` — up to four messages: the initial response
//! (unless mode says `<auth/>` was empty) and `<response/>`s.
//! mode bits 0-2: mechanism (`Mechanism::ALL[n % 5]`); bit 3: the connection has
//! channel-binding data; bit 4: no initial response; bit 5: the client-final is built by
//! the harness's correct client (the fuzzer's second message is ignored); bit 6: the
//! harness appends the correct proof (`,p=...`) to the fuzzer's client-final.
//!
//! Properties:
//! - no panic; every challenge and success payload has a bounded size;
//! - a finished exchange stays finished: later messages fail;
//! - success only with the right password (PLAIN) or the right proof over the exchanged
//!   messages, the server nonce and the channel binding (SCRAM); the server signature in
//!   server-final is the right one;
//! - completeness: the correct client built from a client-first the server accepted
//!   logs in exactly when the user exists.
#![no_main]

use std::num::NonZeroU32;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use libfuzzer_sys::fuzz_target;
use ring::{digest, hmac, pbkdf2};
use xmppd::limits::CAP_SASL_MESSAGE_BYTES;
use xmppd::sasl::{Credentials, Mechanism, SaslContext, SaslFailure, SaslServer, Step};
use xmppd_fuzz::{
    CHANNEL_BINDING, DOMAIN, ITERATIONS, PASSWORD, Reader, SALT, SeededEntropy, trace,
};

const USERS: [&str; 2] = ["alice", "bob"];
const MAX_MESSAGES: usize = 4;
/// server-first is `r=` client-nonce server-nonce `,s=` salt `,i=` count; the client nonce
/// is part of a message of at most `CAP_SASL_MESSAGE_BYTES`.
const MAX_CHALLENGE_BYTES: usize = CAP_SASL_MESSAGE_BYTES + 128;
const MAX_SUCCESS_DATA_BYTES: usize = 128;

fn credentials() -> &'static Credentials {
    static C: OnceLock<Credentials> = OnceLock::new();
    C.get_or_init(|| match Credentials::derive(PASSWORD, SALT, ITERATIONS) {
        Ok(c) => c,
        Err(e) => panic!("fuzzing password refused: {e:?}"),
    })
}

fn lookup(user: &str) -> Option<Credentials> {
    USERS.contains(&user).then(|| credentials().clone())
}

fuzz_target!(|data: &[u8]| {
    let mut input = Reader::new(data);
    let mode = input.u8();
    let mechanism = Mechanism::ALL[usize::from(mode & 7) % Mechanism::ALL.len()];
    let ctx = SaslContext {
        domain: DOMAIN,
        channel_binding: (mode & 0x08 != 0).then_some(CHANNEL_BINDING),
        server_secret: &[7; 32],
    };
    let without_initial = mode & 0x10 != 0;
    let build_final = mode & 0x20 != 0;
    let append_proof = mode & 0x40 != 0;

    let mut rng = SeededEntropy(u64::from(mode) + 1);
    let initial = (!without_initial).then(|| input.blob());
    let (mut server, first_step) = SaslServer::start(mechanism, initial, &ctx, &lookup, &mut rng);
    trace!("{mechanism:?} cb={:?}", ctx.channel_binding.is_some());
    trace!(
        "C: {:?}\nS: {}",
        initial.map(String::from_utf8_lossy),
        show(&first_step)
    );
    let mut exchange = Exchange {
        mechanism,
        ctx: &ctx,
        sent: Vec::new(),
        challenges: Vec::new(),
    };
    if let Some(initial) = initial {
        exchange.sent.push(initial.to_vec());
    }
    if mechanism.is_plus() && ctx.channel_binding.is_none() {
        assert_eq!(
            first_step,
            Step::Failure(SaslFailure::InvalidMechanism),
            "-PLUS without channel binding"
        );
    }
    let mut finished = exchange.check(&first_step);

    for _ in 0..MAX_MESSAGES {
        if input.is_empty() {
            break;
        }
        let mut message = input.blob().to_vec();
        let scram_final = !finished
            && mechanism != Mechanism::Plain
            && exchange.challenges.len() == 1
            && exchange.challenges[0].starts_with(b"r=");
        let correct_client = scram_final && build_final;
        if correct_client {
            message = exchange.correct_client_final(None).unwrap_or(message);
        } else if scram_final && append_proof {
            message = exchange
                .correct_client_final(Some(&message))
                .unwrap_or(message);
        }
        let step = server.step(&message, &ctx, &lookup);
        trace!(
            "C: {:?}\nS: {}",
            String::from_utf8_lossy(&message),
            show(&step)
        );
        exchange.sent.push(message);
        if finished {
            assert!(
                matches!(step, Step::Failure(_)),
                "a finished exchange answered {step:?}"
            );
            continue;
        }
        if correct_client {
            exchange.check_completeness(&step);
        }
        finished = exchange.check(&step);
    }
});

fn show(step: &Step) -> String {
    match step {
        Step::Challenge(c) => format!("challenge {:?}", String::from_utf8_lossy(c)),
        Step::Success {
            username,
            additional,
        } => format!(
            "success {username} {:?}",
            additional.as_deref().map(String::from_utf8_lossy)
        ),
        Step::Failure(f) => format!("failure {f:?}"),
    }
}

struct Exchange<'a> {
    mechanism: Mechanism,
    ctx: &'a SaslContext<'a>,
    /// Client messages in order (the initial response first, when there was one).
    sent: Vec<Vec<u8>>,
    /// Non-empty challenges (server-first).
    challenges: Vec<Vec<u8>>,
}

impl Exchange<'_> {
    /// Checks one step; returns whether the exchange is over.
    fn check(&mut self, step: &Step) -> bool {
        match step {
            Step::Challenge(c) => {
                assert!(
                    c.len() <= MAX_CHALLENGE_BYTES,
                    "challenge of {} bytes",
                    c.len()
                );
                if !c.is_empty() {
                    assert_ne!(self.mechanism, Mechanism::Plain, "PLAIN sent a challenge");
                    assert!(self.challenges.is_empty(), "SCRAM sent a second challenge");
                    self.challenges.push(c.clone());
                }
                false
            }
            Step::Failure(_) => true,
            Step::Success {
                username,
                additional,
            } => {
                assert!(
                    USERS.contains(&username.as_str()),
                    "success for {username:?}, who has no account"
                );
                if let Some(a) = additional {
                    assert!(
                        a.len() <= MAX_SUCCESS_DATA_BYTES,
                        "success data of {} bytes",
                        a.len()
                    );
                }
                match self.mechanism {
                    Mechanism::Plain => self.check_plain_success(username, additional.as_deref()),
                    _ => self.check_scram_success(username, additional.as_deref()),
                }
                true
            }
        }
    }

    fn check_plain_success(&self, username: &str, additional: Option<&[u8]>) {
        assert_eq!(additional, None);
        let message = self.sent.last().map(Vec::as_slice).unwrap_or_default();
        let parts: Vec<&[u8]> = message.split(|&b| b == 0).collect();
        let [_authzid, authcid, password] = parts[..] else {
            panic!("PLAIN success for a message that is not three parts: {message:?}");
        };
        assert_eq!(
            password,
            PASSWORD.as_bytes(),
            "PLAIN success with a wrong password"
        );
        let authcid = std::str::from_utf8(authcid).unwrap_or_default();
        assert_eq!(
            xmppd::jid::normalize_localpart(authcid).as_deref(),
            Ok(username),
            "PLAIN success for another user"
        );
    }

    fn check_scram_success(&self, username: &str, additional: Option<&[u8]>) {
        let Some(client_final) = self.sent.last() else {
            panic!("SCRAM success without a message");
        };
        let proof = match self.verify(client_final) {
            Ok(proof) => proof,
            Err(why) => panic!(
                "SCRAM success, but the independent client says {why}\nclient-first {:?}\nserver-first {:?}\nclient-final {:?}",
                self.client_first().map(String::from_utf8_lossy),
                self.challenges.first().map(|c| String::from_utf8_lossy(c)),
                String::from_utf8_lossy(client_final)
            ),
        };
        let first = self.client_first().unwrap_or_default();
        let user = parse_client_first(first)
            .map(|f| f.username)
            .unwrap_or_default();
        assert_eq!(
            xmppd::jid::normalize_localpart(&user).as_deref(),
            Ok(username),
            "SCRAM success for another user"
        );
        let expected = format!("v={}", BASE64.encode(&proof.server_signature));
        assert_eq!(
            additional,
            Some(expected.as_bytes()),
            "server-final has the wrong server signature"
        );
    }

    /// The correct client built the final message: it must log in exactly when the user
    /// exists (the server accepted client-first, so nothing else can be wrong).
    fn check_completeness(&self, step: &Step) {
        let first = self.client_first().unwrap_or_default();
        let Some(parsed) = parse_client_first(first) else {
            panic!("server accepted a client-first the client cannot read: {first:?}");
        };
        let known = xmppd::jid::normalize_localpart(&parsed.username)
            .is_ok_and(|u| USERS.contains(&u.as_str()));
        match (known, step) {
            (true, Step::Success { .. }) | (false, Step::Failure(SaslFailure::NotAuthorized)) => {}
            _ => panic!(
                "correct SCRAM client for {:?} got {step:?}\nclient-first {:?}\nserver-first {:?}",
                parsed.username,
                String::from_utf8_lossy(first),
                self.challenges.first().map(|c| String::from_utf8_lossy(c))
            ),
        }
    }

    fn client_first(&self) -> Option<&[u8]> {
        // With an empty <auth/>, client-first is the first <response/>.
        self.sent.first().map(Vec::as_slice)
    }

    /// client-final as a correct client writes it; with `prefix`, the fuzzer's
    /// client-final-without-proof followed by the correct proof.
    fn correct_client_final(&self, prefix: Option<&[u8]>) -> Option<Vec<u8>> {
        let first = parse_client_first(self.client_first()?)?;
        let server_first = ServerFirst::parse(self.challenges.first()?)?;
        let without_proof = match prefix {
            Some(p) => p.to_vec(),
            None => {
                let mut binding = first.gs2_header.as_bytes().to_vec();
                if first.gs2_header.starts_with("p=") {
                    binding.extend_from_slice(self.ctx.channel_binding.unwrap_or_default());
                }
                format!("c={},r={}", BASE64.encode(&binding), server_first.nonce).into_bytes()
            }
        };
        let proof = match self.keys(&server_first) {
            Some(keys) => {
                let auth_message = auth_message(&first, self.challenges.first()?, &without_proof);
                let signature = keys.sign(&keys.stored_key, &auth_message);
                keys.client_key
                    .iter()
                    .zip(&signature)
                    .map(|(k, s)| k ^ s)
                    .collect()
            }
            // Not the fuzzing accounts' salt and count: an unknown user, whom no proof
            // can log in. A proof of the right length keeps the message well-formed.
            None => vec![0; self.hash_len()],
        };
        let mut message = without_proof;
        message.extend_from_slice(b",p=");
        message.extend_from_slice(BASE64.encode(proof).as_bytes());
        Some(message)
    }

    /// Checks client-final as RFC 5802 §5.1 and RFC 9266 say a server must; returns the
    /// server signature the server-final must carry.
    fn verify(&self, client_final: &[u8]) -> Result<Verified, &'static str> {
        let first = parse_client_first(self.client_first().ok_or("no client-first")?)
            .ok_or("client-first unreadable")?;
        let challenge = self.challenges.first().ok_or("no server-first")?;
        let server_first = ServerFirst::parse(challenge).ok_or("server-first unreadable")?;
        let text = std::str::from_utf8(client_final).map_err(|_| "client-final not UTF-8")?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or("no proof")?;
        let proof = BASE64.decode(proof).map_err(|_| "proof not base64")?;
        let mut attrs = without_proof.split(',');
        let binding = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .and_then(|c| BASE64.decode(c).ok())
            .ok_or("no c=")?;
        let mut expected_binding = first.gs2_header.as_bytes().to_vec();
        if first.gs2_header.starts_with("p=") {
            expected_binding
                .extend_from_slice(self.ctx.channel_binding.ok_or("p= without binding")?);
        }
        if binding != expected_binding {
            return Err("wrong channel binding");
        }
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or("no r=")?;
        if nonce != server_first.nonce {
            return Err("wrong nonce");
        }
        let keys = self.keys(&server_first).ok_or("no keys")?;
        let auth_message = auth_message(&first, challenge, without_proof.as_bytes());
        let signature = keys.sign(&keys.stored_key, &auth_message);
        let expected: Vec<u8> = keys
            .client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        if proof != expected {
            return Err("wrong proof");
        }
        Ok(Verified {
            server_signature: keys.sign(&keys.server_key, &auth_message),
        })
    }

    fn is_sha1(&self) -> bool {
        matches!(
            self.mechanism,
            Mechanism::ScramSha1 | Mechanism::ScramSha1Plus
        )
    }

    fn hash_len(&self) -> usize {
        if self.is_sha1() { 20 } else { 32 }
    }

    /// The keys of the fuzzing accounts, when server-first advertises their salt and
    /// count (an unknown user gets a fake salt and the default count).
    fn keys(&self, server_first: &ServerFirst) -> Option<Keys> {
        if server_first.salt != SALT || server_first.iterations != ITERATIONS {
            return None;
        }
        Keys::derive(self.is_sha1(), &server_first.salt, server_first.iterations)
    }
}

struct Verified {
    server_signature: Vec<u8>,
}

/// RFC 5802 §3: AuthMessage = client-first-message-bare "," server-first-message ","
/// client-final-message-without-proof.
fn auth_message(first: &ClientFirst, server_first: &[u8], without_proof: &[u8]) -> Vec<u8> {
    let mut m = first.bare.as_bytes().to_vec();
    m.push(b',');
    m.extend_from_slice(server_first);
    m.push(b',');
    m.extend_from_slice(without_proof);
    m
}

struct ClientFirst {
    gs2_header: String,
    bare: String,
    username: String,
}

/// RFC 5802 §7, read the simple way: `gs2-header` is everything up to the second comma.
fn parse_client_first(message: &[u8]) -> Option<ClientFirst> {
    let text = std::str::from_utf8(message).ok()?;
    let (flag, rest) = text.split_once(',')?;
    let (authzid, bare) = rest.split_once(',')?;
    let gs2_header = format!("{flag},{authzid},");
    let name = bare.split(',').next()?.strip_prefix("n=")?;
    Some(ClientFirst {
        gs2_header,
        bare: bare.to_string(),
        username: name.replace("=2C", ",").replace("=3D", "="),
    })
}

struct ServerFirst {
    nonce: String,
    salt: Vec<u8>,
    iterations: u32,
}

impl ServerFirst {
    fn parse(message: &[u8]) -> Option<ServerFirst> {
        let text = std::str::from_utf8(message).ok()?;
        let mut attrs = text.split(',');
        let nonce = attrs.next()?.strip_prefix("r=")?.to_string();
        let salt = BASE64.decode(attrs.next()?.strip_prefix("s=")?).ok()?;
        let iterations = attrs.next()?.strip_prefix("i=")?.parse().ok()?;
        Some(ServerFirst {
            nonce,
            salt,
            iterations,
        })
    }
}

struct Keys {
    sha1: bool,
    client_key: Vec<u8>,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl Keys {
    fn derive(sha1: bool, salt: &[u8], iterations: u32) -> Option<Keys> {
        let rounds = NonZeroU32::new(iterations)?;
        let (algorithm, len) = if sha1 {
            (pbkdf2::PBKDF2_HMAC_SHA1, 20)
        } else {
            (pbkdf2::PBKDF2_HMAC_SHA256, 32)
        };
        let mut salted = vec![0u8; len];
        pbkdf2::derive(algorithm, rounds, salt, PASSWORD.as_bytes(), &mut salted);
        let mut keys = Keys {
            sha1,
            client_key: Vec::new(),
            stored_key: Vec::new(),
            server_key: Vec::new(),
        };
        keys.client_key = keys.sign(&salted, b"Client Key");
        keys.server_key = keys.sign(&salted, b"Server Key");
        let digest_algorithm = if sha1 {
            &digest::SHA1_FOR_LEGACY_USE_ONLY
        } else {
            &digest::SHA256
        };
        keys.stored_key = digest::digest(digest_algorithm, &keys.client_key)
            .as_ref()
            .to_vec();
        Some(keys)
    }

    fn sign(&self, key: &[u8], data: &[u8]) -> Vec<u8> {
        let algorithm = if self.sha1 {
            hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY
        } else {
            hmac::HMAC_SHA256
        };
        hmac::sign(&hmac::Key::new(algorithm, key), data)
            .as_ref()
            .to_vec()
    }
}
