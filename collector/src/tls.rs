//! TLS only. With no certificate configured, the first start creates a private CA and a
//! server certificate in `DATA_DIR/tls/` and prints the CA fingerprint, which enrolment
//! tokens carry and agents pin. The server presents its certificate followed by the CA's.

use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Files of the generated (or configured) certificate set.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    /// Server certificate chain (server, then CA), PEM.
    pub chain: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    pub fn in_dir(dir: &Path) -> TlsFiles {
        TlsFiles {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            chain: dir.join("server-chain.pem"),
            key: dir.join("server.key"),
        }
    }
}

/// Why the TLS material could not be read or made: the file and the cause.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("无法生成证书 (cannot create certificates): {0}")]
    Generate(#[from] rcgen::Error),
}

/// A file error naming the file.
fn file_error(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::File {
        path: path.to_path_buf(),
        source,
    }
}

/// SHA-256 fingerprint of a certificate, `sha256:<hex>`.
pub fn fingerprint(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The CA certificate's fingerprint from its PEM file.
pub fn ca_fingerprint(files: &TlsFiles) -> Result<String, TlsError> {
    let pem = std::fs::read(&files.ca_cert).map_err(file_error(&files.ca_cert))?;
    let der = CertificateDer::from_pem_slice(&pem).map_err(|source| TlsError::Pem {
        path: files.ca_cert.clone(),
        source,
    })?;
    Ok(fingerprint(&der))
}

/// Writes a key readable by its owner only, from the moment the file exists.
fn write_private(path: &Path, data: &str) -> Result<(), TlsError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let fail = |source| TlsError::File {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.create(true).write(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut f = options.open(path).map_err(fail)?;
    // An older file keeps its mode on open: set it too.
    #[cfg(unix)]
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(fail)?;
    f.write_all(data.as_bytes()).map_err(fail)?;
    f.sync_all().map_err(fail)
}

fn ca_params() -> Result<rcgen::CertificateParams, rcgen::Error> {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "Kaohe collector CA");
    p.not_after = rcgen::date_time_ymd(2046, 1, 1);
    p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    Ok(p)
}

/// What ensure() did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Made {
    Nothing,
    /// A new CA and server certificate.
    Everything,
    /// A new server certificate from the existing CA, for names the old one lacked.
    ServerCertificate,
}

/// Creates the CA and a server certificate for `names` (DNS names or IP addresses) unless
/// they exist; re-issues the server certificate (same CA, so enrolled agents keep trusting
/// it) when it does not cover every name.
pub fn ensure(dir: &Path, names: &[String]) -> Result<Made, TlsError> {
    let files = TlsFiles::in_dir(dir);
    let names_file = dir.join("server-names.txt");
    let mut all: Vec<String> = names.to_vec();
    for n in ["localhost", "127.0.0.1"] {
        if !all.iter().any(|x| x == n) {
            all.push(n.to_string());
        }
    }
    let have_ca = files.ca_cert.exists() && files.ca_key.exists();
    let covered: Vec<String> = std::fs::read_to_string(&names_file)
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default();
    if have_ca && files.chain.exists() && files.key.exists() && all.iter().all(|n| covered.contains(n)) {
        return Ok(Made::Nothing);
    }
    std::fs::create_dir_all(dir).map_err(file_error(dir))?;
    let (ca_key, made) = if have_ca {
        let pem = std::fs::read_to_string(&files.ca_key).map_err(file_error(&files.ca_key))?;
        (rcgen::KeyPair::from_pem(&pem)?, Made::ServerCertificate)
    } else {
        (rcgen::KeyPair::generate()?, Made::Everything)
    };
    let ca_key_pem = ca_key.serialize_pem();
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params()?, ca_key)?;
    // Keep the names the old certificate had, too.
    for n in covered {
        if !all.contains(&n) {
            all.push(n);
        }
    }
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(all.clone())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Kaohe collector");
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let cert = params.signed_by(&key, &ca)?;
    let ca_pem = if made == Made::Everything {
        write_private(&files.ca_key, &ca_key_pem)?;
        std::fs::write(&files.ca_cert, ca.pem()).map_err(file_error(&files.ca_cert))?;
        ca.pem()
    } else {
        // The CA certificate on disk stays as it is: its fingerprint is what agents pin.
        std::fs::read_to_string(&files.ca_cert).map_err(file_error(&files.ca_cert))?
    };
    write_private(&files.key, &key.serialize_pem())?;
    std::fs::write(&files.chain, format!("{}{ca_pem}", cert.pem())).map_err(file_error(&files.chain))?;
    std::fs::write(&names_file, all.join("\n")).map_err(file_error(&names_file))?;
    Ok(made)
}

/// Why the listener's TLS configuration cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum AcceptorError {
    #[error("无法读取证书 {} (cannot read the certificate): {source}", path.display())]
    Certificate {
        path: std::path::PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("无法读取私钥 {} (cannot read the key): {source}", path.display())]
    Key {
        path: std::path::PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{0}")]
    Protocols(#[source] rustls::Error),
    #[error("证书与私钥不匹配或无效 (bad certificate or key): {0}")]
    Mismatch(#[source] rustls::Error),
}

/// Builds the TLS acceptor from the PEM chain (server certificate first) and key.
pub fn tls_acceptor(
    chain: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, AcceptorError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(chain)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|source| AcceptorError::Certificate {
            path: chain.to_path_buf(),
            source,
        })?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|source| AcceptorError::Key {
        path: key.to_path_buf(),
        source,
    })?;
    let mut config =
        rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(AcceptorError::Protocols)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(AcceptorError::Mismatch)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)))
}
