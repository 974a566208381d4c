//! TLS for the c2s listeners: certificate loading or first-start generation, rustls server
//! configurations (ring provider, TLS 1.2+), and the `tls-exporter` channel binding.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::files::{create_private_dir, write_atomically};

/// RFC 9266 §2: label and length of the `tls-exporter` channel binding.
const EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";
const EXPORTER_LEN: usize = 32;

/// XEP-0368: the ALPN protocol id of direct TLS c2s.
pub const ALPN_XMPP_CLIENT: &[u8] = b"xmpp-client";

pub struct TlsSetup {
    pub starttls: Arc<ServerConfig>,
    pub direct: Arc<ServerConfig>,
    /// SHA-256 of the leaf certificate, as `AB:CD:…`, for the user to compare in the
    /// client's trust prompt.
    pub fingerprint: String,
    pub cert_path: PathBuf,
}

#[derive(Debug)]
pub enum TlsError {
    Io(PathBuf, io::Error),
    Pem(PathBuf, String),
    Generate(String),
    Rustls(String),
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            TlsError::Pem(p, e) => write!(f, "{}: {e}", p.display()),
            TlsError::Generate(e) => write!(f, "generating a self-signed certificate: {e}"),
            TlsError::Rustls(e) => write!(f, "TLS configuration: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// Loads the configured certificate, or the generated one under `data_dir/tls/`
/// (created on first start and whenever the domain changes).
pub fn setup(
    cert: Option<&Path>,
    key: Option<&Path>,
    data_dir: &Path,
    domain: &str,
) -> Result<TlsSetup, TlsError> {
    let (cert_path, key_path) = match (cert, key) {
        (Some(c), Some(k)) => (c.to_path_buf(), k.to_path_buf()),
        _ => ensure_generated(data_dir, domain)?,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| TlsError::Pem(cert_path.clone(), e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem(cert_path.clone(), e.to_string()))?;
    let Some(leaf) = certs.first() else {
        return Err(TlsError::Pem(
            cert_path,
            "no certificate in the file".into(),
        ));
    };
    let fingerprint = fingerprint(leaf.as_ref());
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| TlsError::Pem(key_path.clone(), e.to_string()))?;
    // One ticket key for both listeners: a client resumes whichever port it comes back on.
    let ticketer =
        rustls::crypto::ring::Ticketer::new().map_err(|e| TlsError::Rustls(e.to_string()))?;
    let starttls = server_config(certs.clone(), key.clone_key(), Vec::new(), &ticketer)?;
    let direct = server_config(certs, key, vec![ALPN_XMPP_CLIENT.to_vec()], &ticketer)?;
    Ok(TlsSetup {
        starttls,
        direct,
        fingerprint,
        cert_path,
    })
}

fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: Vec<Vec<u8>>,
    ticketer: &Arc<dyn rustls::server::ProducesTickets>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = preferred_cipher_suites();
    let provider = Arc::new(provider);
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    cfg.alpn_protocols = alpn;
    // Resumption (a phone coming back from sleep skips the certificate and its signature)
    // with stateless tickets: the server keeps nothing per session, where rustls's default
    // cache would hold up to 256 sessions per listener. One ticket per handshake is enough
    // for a client that keeps one connection.
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.ticketer = ticketer.clone();
    cfg.send_tls13_tickets = 1;
    // Our order wins: clients (rustls, OpenSSL) put AES-256-GCM-SHA384 first, whose
    // SHA-384 key schedule and wider key cost a router more than the alternatives give it.
    cfg.ignore_client_order = true;
    Ok(Arc::new(cfg))
}

/// Whether this CPU has AES instructions (x86 AES-NI, ARMv8 crypto extensions). A Pi 4
/// and most router SoCs (MIPS, ARMv7) do not: there ChaCha20-Poly1305 is several times
/// faster than software AES.
fn hardware_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// The cipher suites in the server's order: SHA-256 suites first (cheaper key schedule
/// than SHA-384), AES-128-GCM first where the CPU has AES instructions, ChaCha20 first
/// where it does not. Every suite the ring provider has stays available.
fn preferred_cipher_suites() -> Vec<rustls::SupportedCipherSuite> {
    use rustls::crypto::ring::cipher_suite as cs;
    let tls13 = if hardware_aes() {
        [
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
        ]
    } else {
        [
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
        ]
    };
    let mut suites: Vec<_> = tls13.to_vec();
    for s in rustls::crypto::ring::ALL_CIPHER_SUITES {
        if !suites.iter().any(|x| x.suite() == s.suite()) {
            suites.push(*s);
        }
    }
    suites
}

fn ensure_generated(data_dir: &Path, domain: &str) -> Result<(PathBuf, PathBuf), TlsError> {
    let dir = data_dir.join("tls");
    create_private_dir(&dir).map_err(|e| TlsError::Io(dir.clone(), e))?;
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    let marker = dir.join("generated-for");
    let current = std::fs::read_to_string(&marker).ok();
    if current.as_deref().map(str::trim) == Some(domain) && cert_path.exists() && key_path.exists()
    {
        return Ok((cert_path, key_path));
    }
    log::info!(
        "generating a self-signed certificate for {domain} in {}",
        dir.display()
    );
    let (key_pem, cert_pem) = self_signed_pem(domain)?;
    // Key first: a crash in between leaves a key without its certificate, which the next
    // start regenerates (the marker is written last).
    write_atomically(&key_path, key_pem.as_bytes(), 0o600)
        .map_err(|e| TlsError::Io(key_path.clone(), e))?;
    write_atomically(&cert_path, cert_pem.as_bytes(), 0o644)
        .map_err(|e| TlsError::Io(cert_path.clone(), e))?;
    write_atomically(&marker, domain.as_bytes(), 0o600)
        .map_err(|e| TlsError::Io(marker.clone(), e))?;
    Ok((cert_path, key_path))
}

/// A new key and a self-signed certificate naming `domain`, both as PEM.
#[cfg(feature = "generate-cert")]
fn self_signed_pem(domain: &str) -> Result<(String, String), TlsError> {
    let gen_err = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let key = rcgen::KeyPair::generate().map_err(gen_err)?;
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()]).map_err(gen_err)?;
    // The name a user sees in the client's trust prompt.
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, domain);
    let cert = params.self_signed(&key).map_err(gen_err)?;
    Ok((key.serialize_pem(), cert.pem()))
}

/// A board build without the `generate-cert` feature (no rcgen) ships its own certificate.
#[cfg(not(feature = "generate-cert"))]
fn self_signed_pem(_domain: &str) -> Result<(String, String), TlsError> {
    Err(TlsError::Generate(
        "this build has no certificate generator (cargo feature generate-cert): \
         set tls.certificate and tls.key"
            .into(),
    ))
}

pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// RFC 9266 `tls-exporter` data. Only offered over TLS 1.3: with TLS 1.2 the exporter is
/// safe only with the extended master secret, which a client cannot verify we used.
pub fn channel_binding(conn: &rustls::ServerConnection) -> Option<Vec<u8>> {
    if conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
        return None;
    }
    let mut out = vec![0u8; EXPORTER_LEN];
    conn.export_keying_material(&mut out[..], EXPORTER_LABEL, None)
        .ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_suite_stays_available_once_sha256_first() {
        let suites = preferred_cipher_suites();
        assert_eq!(suites.len(), rustls::crypto::ring::ALL_CIPHER_SUITES.len());
        for s in rustls::crypto::ring::ALL_CIPHER_SUITES {
            assert_eq!(suites.iter().filter(|x| x.suite() == s.suite()).count(), 1);
        }
        assert_ne!(
            suites[0].suite(),
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384
        );
    }

    /// Runs one in-memory handshake; returns how the client saw it.
    #[cfg(feature = "generate-cert")]
    fn handshake(
        server: &Arc<ServerConfig>,
        client: &Arc<rustls::ClientConfig>,
    ) -> Option<rustls::HandshakeKind> {
        let name = rustls::pki_types::ServerName::try_from("localhost").ok()?;
        let mut c = rustls::ClientConnection::new(client.clone(), name).ok()?;
        let mut s = rustls::ServerConnection::new(server.clone()).ok()?;
        // Enough round trips for the handshake and the ticket that follows it.
        for _ in 0..8 {
            let mut wire = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut wire).ok()?;
            }
            let mut rd = wire.as_slice();
            while !rd.is_empty() {
                s.read_tls(&mut rd).ok()?;
                s.process_new_packets().ok()?;
            }
            let mut wire = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut wire).ok()?;
            }
            let mut rd = wire.as_slice();
            while !rd.is_empty() {
                c.read_tls(&mut rd).ok()?;
                c.process_new_packets().ok()?;
            }
        }
        c.handshake_kind()
    }

    #[cfg(feature = "generate-cert")]
    #[test]
    fn a_returning_client_resumes_on_either_listener() {
        let dir = std::env::temp_dir().join(format!("xmppd-tls-resume-{}", std::process::id()));
        let setup = setup(None, None, &dir, "localhost").expect("tls setup");
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&setup.cert_path).expect("cert file") {
            roots.add(cert.expect("cert")).expect("root");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![ALPN_XMPP_CLIENT.to_vec()];
        let client = Arc::new(client);
        assert_eq!(
            handshake(&setup.starttls, &client),
            Some(rustls::HandshakeKind::Full)
        );
        // The ticket from the STARTTLS port is good on the direct TLS one.
        assert_eq!(
            handshake(&setup.direct, &client),
            Some(rustls::HandshakeKind::Resumed)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
