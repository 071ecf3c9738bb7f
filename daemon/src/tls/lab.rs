//! A CA and certificates for a lab or a test (`cutover tls lab`): one CA, and for each name a
//! certificate that serves as a server's and a client's, signed by it. Production should use
//! its own PKI; this makes the files a daemon's `--tls-*` flags take.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// The CA's certificate in a lab folder.
pub const CA_CERT: &str = "ca.pem";
/// The CA's private key in a lab folder (keep it: it issues the next certificates).
pub const CA_KEY: &str = "ca.key";

/// Why lab files could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A certificate could not be made.
    #[error("cannot make the certificate {name}: {detail}")]
    Certificate {
        /// Its name.
        name: String,
        /// What rcgen said.
        detail: String,
    },
}

/// A lab CA, able to issue certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    key_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ca(..)")
    }
}

/// A certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

fn failed(name: &str) -> impl FnOnce(rcgen::Error) -> LabError + '_ {
    move |e| LabError::Certificate {
        name: name.to_owned(),
        detail: e.to_string(),
    }
}

impl Ca {
    /// A new CA named `name`, valid for ten years.
    pub fn new(name: &str) -> Result<Self, LabError> {
        let key = KeyPair::generate().map_err(failed(name))?;
        let params = ca_params(name);
        let cert = params.self_signed(&key).map_err(failed(name))?;
        Ok(Self {
            pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA in `dir`, made there first if it has none.
    pub fn open_or_create(dir: &Path) -> Result<Self, LabError> {
        let (cert, key) = (dir.join(CA_CERT), dir.join(CA_KEY));
        if cert.exists() && key.exists() {
            let read = |path: &Path| {
                std::fs::read_to_string(path).map_err(|source| LabError::Io {
                    path: path.to_owned(),
                    source,
                })
            };
            let (pem, key_pem) = (read(&cert)?, read(&key)?);
            let signing = KeyPair::from_pem(&key_pem).map_err(failed(CA_KEY))?;
            // Certificates are chained by the issuer's name and checked with its key: the
            // same name and key issue as the CA did when it was made.
            return Ok(Self {
                issuer: Issuer::new(ca_params(LAB_CA_NAME), signing),
                pem,
                key_pem,
            });
        }
        let ca = Self::new(LAB_CA_NAME)?;
        write(&cert, &ca.pem)?;
        write_private(&key, &ca.key_pem)?;
        Ok(ca)
    }

    /// The CA's certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A certificate for `name`, valid as a server's for every name or IP in `sans` and as a
    /// client's, from `not_before` to `not_after`.
    pub fn issue(
        &self,
        name: &str,
        sans: &[String],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<Issued, LabError> {
        let key = KeyPair::generate().map_err(failed(name))?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.subject_alt_names = sans
            .iter()
            .map(|san| match san.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => san.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()
            .map_err(failed(name))?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let cert = params.signed_by(&key, &self.issuer).map_err(failed(name))?;
        Ok(Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }

    /// [`issue`](Self::issue) valid from an hour ago for `days`, written to `dir` as
    /// `NAME.pem` and `NAME.key`; returns their paths.
    pub fn issue_to(
        &self,
        dir: &Path,
        name: &str,
        sans: &[String],
        days: u32,
    ) -> Result<(PathBuf, PathBuf), LabError> {
        let now = SystemTime::now();
        let issued = self.issue(
            name,
            sans,
            now - Duration::from_secs(3_600),
            now + Duration::from_secs(u64::from(days) * 86_400),
        )?;
        let (cert, key) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        write(&cert, &issued.cert)?;
        write_private(&key, &issued.key)?;
        Ok((cert, key))
    }
}

/// The name of the CA that [`Ca::open_or_create`] makes.
const LAB_CA_NAME: &str = "cutover lab CA";

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(3_600)).into();
    params.not_after = (now + Duration::from_secs(10 * 365 * 86_400)).into();
    params
}

fn write(path: &Path, text: &str) -> Result<(), LabError> {
    // Written aside then renamed: a daemon watching the file never reads half of it.
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, text)
        .and_then(|()| std::fs::rename(&aside, path))
        .map_err(|source| LabError::Io {
            path: path.to_owned(),
            source,
        })
}

fn write_private(path: &Path, text: &str) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt as _;
    write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        LabError::Io {
            path: path.to_owned(),
            source,
        }
    })
}
