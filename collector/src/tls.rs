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

/// SHA-256 fingerprint of a certificate, `sha256:<hex>`.
pub fn fingerprint(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The CA certificate's fingerprint from its PEM file.
pub fn ca_fingerprint(files: &TlsFiles) -> Result<String, String> {
    let pem = std::fs::read(&files.ca_cert).map_err(|e| format!("{}: {e}", files.ca_cert.display()))?;
    let der = CertificateDer::from_pem_slice(&pem).map_err(|e| format!("{}: {e}", files.ca_cert.display()))?;
    Ok(fingerprint(&der))
}

fn write_private(path: &Path, data: &str) -> Result<(), String> {
    std::fs::write(path, data).map_err(|e| format!("{}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// Creates the CA and a server certificate for `names` (DNS names or IP addresses) unless
/// they exist. Returns true when it created them.
pub fn ensure(dir: &Path, names: &[String]) -> Result<bool, String> {
    let files = TlsFiles::in_dir(dir);
    if files.ca_cert.exists() && files.chain.exists() && files.key.exists() {
        return Ok(false);
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let err = |e: rcgen::Error| format!("无法生成证书 (cannot create certificates): {e}");
    let ca_key = rcgen::KeyPair::generate().map_err(err)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Kaohe collector CA");
    ca_params.not_after = rcgen::date_time_ymd(2046, 1, 1);
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca_key_pem = ca_key.serialize_pem();
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).map_err(err)?;
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let mut all: Vec<String> = names.to_vec();
    for n in ["localhost", "127.0.0.1"] {
        if !all.iter().any(|x| x == n) {
            all.push(n.to_string());
        }
    }
    let mut params = rcgen::CertificateParams::new(all).map_err(err)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Kaohe collector");
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let cert = params.signed_by(&key, &ca).map_err(err)?;
    write_private(&files.ca_key, &ca_key_pem)?;
    write_private(&files.key, &key.serialize_pem())?;
    std::fs::write(&files.ca_cert, ca.pem()).map_err(|e| format!("{}: {e}", files.ca_cert.display()))?;
    std::fs::write(&files.chain, format!("{}{}", cert.pem(), ca.pem()))
        .map_err(|e| format!("{}: {e}", files.chain.display()))?;
    Ok(true)
}
