use std::{
    path::PathBuf,
    time::{Duration, SystemTime},
};

use rustls::pki_types::ServerName;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_rustls::TlsConnector;

use super::{lab::Ca, *};

const HOUR: Duration = Duration::from_secs(3_600);

/// A folder with a CA, a server certificate for localhost and a client certificate.
struct Pki {
    dir: PathBuf,
    ca: Ca,
}

impl Pki {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("cutover-tls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let ca = Ca::new("test CA").expect("CA");
        std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
        Self { dir, ca }
    }

    fn issue(&self, name: &str, from: SystemTime, to: SystemTime) -> (PathBuf, PathBuf) {
        let sans = ["localhost".to_owned(), "127.0.0.1".to_owned()];
        let issued = self.ca.issue(name, &sans, from, to).expect("issue");
        let (cert, key) = (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert, issued.cert).expect("write");
        std::fs::write(&key, issued.key).expect("write");
        (cert, key)
    }

    fn valid(&self, name: &str) -> (PathBuf, PathBuf) {
        let now = SystemTime::now();
        self.issue(name, now - HOUR, now + 24 * HOUR)
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn server(&self) -> Tls {
        let (cert, key) = self.valid("server");
        Tls::load(TlsFiles {
            cert,
            key,
            client_ca: Some(self.ca()),
        })
        .expect("server TLS")
    }

    fn client(&self, identity: Option<(PathBuf, PathBuf)>) -> ClientTls {
        let identity = identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
        ClientTls::load(Some(&self.ca()), identity, false).expect("client TLS")
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Serves one connection with `tls` and `certs`; what the server side made of it.
async fn serve_one(
    tls: Tls,
    certs: ClientCerts,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<Option<bool>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let (stream, peer) = listener.accept().await.expect("accept");
        let mut accepted = tls
            .accept(stream, peer, "test", certs, Duration::from_secs(5))
            .await?;
        let mut byte = [0u8; 1];
        accepted.stream.read_exact(&mut byte).await.ok()?;
        accepted.stream.write_all(&byte).await.ok()?;
        accepted.stream.flush().await.ok()?;
        Some(accepted.client_certified)
    });
    (addr, task)
}

/// Connects with `client`, sends a byte and reads it back; the server's certificate, or
/// what went wrong as [`explain`] says it.
async fn exchange(client: &ClientTls, addr: std::net::SocketAddr) -> Result<Vec<u8>, String> {
    let config = client.rustls("https://localhost", &[]).expect("config");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let outcome = async {
        let mut stream = TlsConnector::from(config).connect(name, tcp).await?;
        stream.write_all(b"x").await?;
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await?;
        let cert = stream.get_ref().1.peer_certificates().expect("server cert")[0].to_vec();
        Ok::<_, io::Error>(cert)
    };
    outcome
        .await
        .map_err(|e| explain(&e).unwrap_or_else(|| e.to_string()))
}

#[tokio::test]
async fn mutual_tls_admits_only_certificates_of_the_client_ca() {
    let pki = Pki::new("mutual");
    let server = pki.server();
    assert!(server.mutual());

    let (addr, served) = serve_one(server.clone(), ClientCerts::Required).await;
    let good = pki.client(Some(pki.valid("client")));
    exchange(&good, addr)
        .await
        .expect("a certificate of the client CA is admitted");
    assert_eq!(served.await.expect("task"), Some(true));

    // No certificate at all.
    let (addr, served) = serve_one(server.clone(), ClientCerts::Required).await;
    let error = exchange(&pki.client(None), addr)
        .await
        .expect_err("refused");
    assert!(error.contains("client certificate"), "{error}");
    assert_eq!(served.await.expect("task"), None);

    // A certificate from another CA (the client trusts the server's CA).
    let other = Pki::new("other");
    let (addr, served) = serve_one(server.clone(), ClientCerts::Required).await;
    let (cert, key) = other.valid("stranger");
    let stranger = ClientTls::load(Some(&pki.ca()), Some((&cert, &key)), false).expect("load");
    let error = exchange(&stranger, addr).await.expect_err("refused");
    assert!(error.contains("not signed by"), "{error}");
    assert_eq!(served.await.expect("task"), None);

    // An expired certificate of the right CA.
    let now = SystemTime::now();
    let expired = pki.issue("expired", now - 48 * HOUR, now - HOUR);
    let (addr, served) = serve_one(server.clone(), ClientCerts::Required).await;
    let error = exchange(&pki.client(Some(expired)), addr)
        .await
        .expect_err("refused");
    assert!(error.contains("expired"), "{error}");
    assert_eq!(served.await.expect("task"), None);

    // Ops ports take clients without a certificate and say so.
    let (addr, served) = serve_one(server, ClientCerts::Optional).await;
    exchange(&pki.client(None), addr).await.expect("admitted");
    assert_eq!(served.await.expect("task"), Some(false));
}

#[tokio::test]
async fn a_client_refuses_a_server_of_another_ca_or_name() {
    let pki = Pki::new("server-side");
    let other = Pki::new("server-other");
    let (addr, _served) = serve_one(other.server(), ClientCerts::Optional).await;
    let error = exchange(&pki.client(None), addr)
        .await
        .expect_err("unknown CA");
    assert!(
        error.contains("not signed by a CA this side trusts"),
        "{error}"
    );

    // A server whose certificate names another host.
    let now = SystemTime::now();
    let issued = pki
        .ca
        .issue(
            "elsewhere",
            &["db.example".to_owned()],
            now - HOUR,
            now + HOUR,
        )
        .expect("issue");
    std::fs::write(pki.dir.join("elsewhere.pem"), issued.cert).expect("write");
    std::fs::write(pki.dir.join("elsewhere.key"), issued.key).expect("write");
    let server = Tls::load(TlsFiles {
        cert: pki.dir.join("elsewhere.pem"),
        key: pki.dir.join("elsewhere.key"),
        client_ca: None,
    })
    .expect("load");
    let (addr, _served) = serve_one(server, ClientCerts::Optional).await;
    let error = exchange(&pki.client(None), addr)
        .await
        .expect_err("wrong name");
    assert!(error.contains("does not name the host"), "{error}");
}

#[tokio::test]
async fn plain_http_to_a_tls_port_is_told_to_use_tls() {
    let pki = Pki::new("plain");
    let (addr, served) = serve_one(pki.server(), ClientCerts::Optional).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.ends_with(PLAIN_HTTP_DETAIL), "{answer}");
    drop(stream); // the server lingers until the client closes
    assert_eq!(served.await.expect("task"), None);
}

#[tokio::test]
async fn a_reload_serves_the_new_certificate_and_a_bad_one_keeps_the_old() {
    let pki = Pki::new("reload");
    let server = pki.server();
    let client = pki.client(Some(pki.valid("client")));
    let (addr, _) = serve_one(server.clone(), ClientCerts::Required).await;
    let before = exchange(&client, addr).await.expect("first");

    pki.valid("server"); // new files in place
    server.reload().expect("reload");
    let (addr, _) = serve_one(server.clone(), ClientCerts::Required).await;
    let after = exchange(&client, addr).await.expect("after reload");
    assert_ne!(before, after, "the new certificate is served");

    std::fs::write(pki.dir.join("server.key"), "not a key").expect("write");
    let error = server.reload().expect_err("a bad key is refused");
    assert!(error.to_string().contains("--tls-key"), "{error}");
    let (addr, _) = serve_one(server, ClientCerts::Required).await;
    let still = exchange(&client, addr).await.expect("the old one stays");
    assert_eq!(still, after);
}

#[test]
fn load_errors_name_the_flag_and_the_file() {
    let pki = Pki::new("errors");
    let (cert, key) = pki.valid("server");
    let missing = pki.dir.join("missing.pem");
    let error = Tls::load(TlsFiles {
        cert: missing.clone(),
        key: key.clone(),
        client_ca: None,
    })
    .expect_err("missing");
    let text = error.to_string();
    assert!(
        text.starts_with("--tls-cert ") && text.contains("missing.pem"),
        "{text}"
    );

    let error = Tls::load(TlsFiles {
        cert: key.clone(),
        key: cert.clone(),
        client_ca: None,
    })
    .expect_err("swapped");
    assert!(
        error.to_string().contains("holds no certificate"),
        "{error}"
    );

    let (_, other_key) = pki.valid("other");
    let error = Tls::load(TlsFiles {
        cert,
        key: other_key,
        client_ca: None,
    })
    .expect_err("mismatch");
    assert!(error.to_string().contains("does not go with"), "{error}");
}

#[test]
fn not_after_is_read_from_the_certificate() {
    let pki = Pki::new("expiry");
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(4_102_444_800); // 2100-01-01
    let (cert, _) = pki.issue("far", SystemTime::now() - HOUR, at);
    let chain = certificates(&cert, "--tls-cert").expect("read");
    assert_eq!(not_after(&chain[0]), Some(at));
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000); // 2027, UTCTime
    let (cert, _) = pki.issue("near", SystemTime::now() - HOUR, at);
    let chain = certificates(&cert, "--tls-cert").expect("read");
    assert_eq!(not_after(&chain[0]), Some(at));
}

#[test]
fn tokens_go_in_clear_text_only_to_loopback() {
    let tls = ClientTls::default();
    for fine in [
        "http://127.0.0.1:7071",
        "127.0.0.2:7071",
        "http://localhost:1",
        "http://[::1]:7071",
        "https://10.0.0.5:7071",
        "https://blue-0:7071",
    ] {
        assert!(tls.check_token(fine, "the token").is_ok(), "{fine}");
    }
    for refused in ["http://10.0.0.5:7071", "blue-0:7071", "http://[fd00::1]:1"] {
        let error = tls
            .check_token(refused, "blue.token_file")
            .expect_err(refused);
        assert!(
            error.contains(refused) && error.contains("--insecure-token"),
            "{error}"
        );
    }
    let lab = ClientTls {
        insecure_token: true,
        ..ClientTls::default()
    };
    assert!(lab.check_token("http://10.0.0.5:7071", "the token").is_ok());
}

#[test]
fn failures_known_only_by_their_text_are_explained_too() {
    let text = io::Error::new(
        io::ErrorKind::InvalidData,
        "received fatal alert: DecryptError",
    );
    let advice = explain(&text).expect("explained");
    assert!(advice.contains("not signed by"), "{advice}");
    let text = io::Error::other("received fatal alert: CertificateRequired");
    assert!(
        explain(&text)
            .expect("explained")
            .contains("client certificate")
    );
    assert_eq!(explain(&io::Error::other("connection refused")), None);
}
