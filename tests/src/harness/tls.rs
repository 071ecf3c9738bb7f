//! TLS for multi-process tests: a lab CA made by the binary (`cutover tls lab`), the flags
//! that make a daemon serve and call with it, and a blocking HTTPS client.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::Context;
use rustls::{ClientConfig, pki_types::ServerName};

use super::{Cluster, http::HttpResponse};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A folder of lab certificates: `ca.pem`, and `NAME.pem`, `NAME.key` for each name.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The folder.
    pub dir: PathBuf,
}

impl Pki {
    /// Runs `cutover tls lab` in `folder` of the cluster for `names`.
    pub fn make(cluster: &Cluster, folder: &str, names: &[&str]) -> anyhow::Result<Self> {
        let dir = cluster.dir(folder)?;
        let mut args = vec![
            "tls".to_owned(),
            "lab".to_owned(),
            "--dir".to_owned(),
            dir.display().to_string(),
        ];
        for name in names {
            args.extend(["--name".to_owned(), (*name).to_owned()]);
        }
        let output = cluster.run(&args)?;
        anyhow::ensure!(output.code == Some(0), "cutover tls lab: {output:?}");
        Ok(Self { dir })
    }

    /// The CA's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `name`'s certificate.
    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    /// `name`'s key.
    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }

    /// A daemon's flags: serve `name`'s certificate, require client certificates of this CA,
    /// verify servers against it.
    pub fn daemon_flags(&self, name: &str) -> Vec<String> {
        let path = |p: PathBuf| p.display().to_string();
        vec![
            "--tls-cert".to_owned(),
            path(self.cert(name)),
            "--tls-key".to_owned(),
            path(self.key(name)),
            "--tls-client-ca".to_owned(),
            path(self.ca()),
            "--tls-ca".to_owned(),
            path(self.ca()),
        ]
    }

    /// An operator command's flags: present `name`'s certificate, verify against this CA.
    pub fn operator_flags(&self, name: &str) -> Vec<String> {
        let mut flags = self.daemon_flags(name);
        flags.drain(4..6); // no --tls-client-ca
        flags
    }

    /// A certificate for `name` issued by this CA, valid from `from` to `to` (an expired one,
    /// say), written as `NAME.pem` and `NAME.key`.
    pub fn issue(&self, name: &str, from: SystemTime, to: SystemTime) -> anyhow::Result<()> {
        let ca = cutover_daemon::tls::lab::Ca::open_or_create(&self.dir)?;
        let sans = ["localhost".to_owned(), "127.0.0.1".to_owned()];
        let issued = ca.issue(name, &sans, from, to)?;
        std::fs::write(self.cert(name), issued.cert)?;
        std::fs::write(self.key(name), issued.key)?;
        Ok(())
    }

    /// A client that trusts this CA and presents `identity`'s certificate, if given (the
    /// daemons' own client settings, `ClientTls`).
    pub fn client(&self, identity: Option<&str>) -> anyhow::Result<TlsClient> {
        let files = identity.map(|name| (self.cert(name), self.key(name)));
        let identity = files.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
        let config = cutover_daemon::tls::ClientTls::load(Some(&self.ca()), identity, false)?
            .rustls("https://localhost", &[b"http/1.1"])
            .map_err(anyhow::Error::msg)?;
        Ok(TlsClient { config })
    }
}

/// A blocking HTTPS/1.1 client for tests.
#[derive(Debug, Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
}

impl TlsClient {
    /// Sends `METHOD PATH` with `body` to `addr` over TLS (server name `localhost`); the
    /// answer, or the TLS error.
    pub fn request(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> anyhow::Result<HttpResponse> {
        Ok(self.exchange(addr, method, path, body)?.0)
    }

    /// [`request`](Self::request), and the server's certificate (DER).
    pub fn exchange(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> anyhow::Result<(HttpResponse, Vec<u8>)> {
        let tcp = TcpStream::connect_timeout(&addr, TIMEOUT)
            .with_context(|| format!("connecting {addr}"))?;
        tcp.set_read_timeout(Some(TIMEOUT))?;
        tcp.set_write_timeout(Some(TIMEOUT))?;
        let name = ServerName::try_from("localhost")?;
        let connection = rustls::ClientConnection::new(Arc::clone(&self.config), name)?;
        let mut stream = rustls::StreamOwned::new(connection, tcp);
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\
             content-length: {}\r\n",
            body.len()
        );
        if !body.is_empty() {
            head.push_str("content-type: application/json\r\n");
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        stream.flush()?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        while !super::http::complete(&raw) {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                // A close without close_notify after a whole answer is not a failure.
                Err(_) if super::http::complete(&raw) => break,
                Err(error) => {
                    return Err(error).with_context(|| format!("{method} {path} on {addr}"));
                }
            }
        }
        let cert = stream
            .conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|c| c.to_vec())
            .unwrap_or_default();
        Ok((super::http::parse(&raw)?, cert))
    }
}
