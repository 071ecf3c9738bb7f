//! A node's address in a cluster file: `HOST:PORT`, where HOST is an IP address
//! (`10.0.0.1:7070`, `[::1]:7070`) or a DNS name (`blue-0.blue.ns.svc.cluster.local:7070`).
//!
//! A name is kept as written and resolved each time a peer connects, not once at start:
//! under Kubernetes a restarted pod keeps its StatefulSet name but not its IP, and is found
//! again at its new one. Names compare case-insensitively ([`Address::normalised`]), as DNS
//! does.

use std::{
    fmt,
    net::{Ipv4Addr, SocketAddr},
    str::FromStr,
};

/// The longest DNS name, without its trailing dot (RFC 1035).
const MAX_NAME: usize = 253;
/// The longest label (dot-separated part) of a DNS name.
const MAX_LABEL: usize = 63;
/// How the messages show a good address.
const EXAMPLES: &str = "like 10.0.0.1:7070, [fd00::1]:7070 or blue-0.blue:7070";

/// `HOST:PORT`: an IP address or a DNS name, and a port from 1 to 65535.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address(Host);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Host {
    /// An IP address and its port (no IPv6 scope id).
    Ip(SocketAddr),
    /// A DNS name as written (its case kept) and the port.
    Name(String, u16),
}

impl Address {
    /// The port.
    pub fn port(&self) -> u16 {
        match &self.0 {
            Host::Ip(addr) => addr.port(),
            Host::Name(_, port) => *port,
        }
    }

    /// The socket address, when the host is an IP address (connected to without a lookup).
    pub fn ip(&self) -> Option<SocketAddr> {
        match &self.0 {
            Host::Ip(addr) => Some(*addr),
            Host::Name(..) => None,
        }
    }

    /// The DNS name as written, when the host is one (resolved at each connect).
    pub fn dns_name(&self) -> Option<&str> {
        match &self.0 {
            Host::Ip(_) => None,
            Host::Name(name, _) => Some(name),
        }
    }

    /// The text two addresses are compared by: a name lowercased, an IP as `SocketAddr`
    /// shows it (`[::1]:7070`). The cluster hash is made of it.
    pub fn normalised(&self) -> String {
        match &self.0 {
            Host::Ip(addr) => addr.to_string(),
            Host::Name(name, port) => format!("{}:{port}", name.to_ascii_lowercase()),
        }
    }

    /// Where a node whose entry this is listens by default: the IP itself, or every IPv4
    /// interface on the port for a name (which names this machine, but the node cannot
    /// tell by which of its addresses).
    pub fn listen_addr(&self) -> SocketAddr {
        match &self.0 {
            Host::Ip(addr) => *addr,
            Host::Name(_, port) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, *port)),
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Self {
        Self(Host::Ip(addr))
    }
}

impl fmt::Display for Address {
    /// As written: `10.0.0.1:7070`, `[::1]:7070`, `blue-0.blue:7070`. Honours width and
    /// alignment, as `SocketAddr` does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Host::Ip(addr) => addr.fmt(f),
            Host::Name(name, port) if f.width().is_none() => write!(f, "{name}:{port}"),
            Host::Name(name, port) => f.pad(&format!("{name}:{port}")),
        }
    }
}

impl FromStr for Address {
    type Err = AddressError;

    /// Parses `HOST:PORT`, IPv6 in brackets (`[::1]:7070`).
    fn from_str(text: &str) -> Result<Self, AddressError> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            if addr.port() == 0 {
                return Err(AddressError::BadPort("0".to_owned()));
            }
            // `fe80::1%2` is not a host a URI can carry (it would be `fe80::1%252`).
            if let SocketAddr::V6(v6) = addr
                && v6.scope_id() != 0
            {
                return Err(AddressError::ScopeId(text.to_owned()));
            }
            return Ok(Self(Host::Ip(addr)));
        }
        if let Some(bracketed) = text.strip_prefix('[') {
            // Not a SocketAddr: a bad port, or brackets around something not IPv6.
            let (inner, rest) = bracketed.split_once(']').ok_or(AddressError::NoPort)?;
            let port = rest.strip_prefix(':').ok_or(AddressError::NoPort)?;
            check_port(port)?;
            return Err(AddressError::NotIpv6(inner.to_owned()));
        }
        let (host, port) = text.rsplit_once(':').ok_or(AddressError::NoPort)?;
        let port = check_port(port)?;
        check_name(host)?;
        Ok(Self(Host::Name(host.to_owned(), port)))
    }
}

/// A port: digits, 1 to 65535.
fn check_port(text: &str) -> Result<u16, AddressError> {
    text.parse::<u16>()
        .ok()
        .filter(|port| *port != 0 && text.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| AddressError::BadPort(text.to_owned()))
}

/// A DNS name: labels of 1 to 63 letters, digits and hyphens (not first or last), joined
/// by dots, at most 253 in all; one trailing dot (an absolute name) allowed.
fn check_name(host: &str) -> Result<(), AddressError> {
    if host.is_empty() {
        return Err(AddressError::EmptyHost);
    }
    if host.contains(':') {
        return Err(AddressError::Unbracketed(host.to_owned()));
    }
    if let Some(character) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.')))
    {
        return Err(AddressError::BadCharacter {
            host: host.to_owned(),
            character,
        });
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.len() > MAX_NAME {
        return Err(AddressError::LongName(name.len()));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(AddressError::EmptyLabel(host.to_owned()));
        }
        if label.len() > MAX_LABEL {
            return Err(AddressError::LongLabel(label.to_owned()));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(AddressError::Hyphen(label.to_owned()));
        }
    }
    // A resolver reads "10.0.0.256" or "10.1" as an IPv4 address, not a name.
    if name
        .rsplit('.')
        .next()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(AddressError::NumericName(host.to_owned()));
    }
    Ok(())
}

/// Why a text is not `HOST:PORT`; each message ends with what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// No `:PORT`.
    #[error("it has no port: write HOST:PORT, {EXAMPLES}")]
    NoPort,
    /// The port is not a number from 1 to 65535.
    #[error("the port {0:?} is not a number from 1 to 65535")]
    BadPort(String),
    /// Nothing before `:PORT`.
    #[error("the host is empty: write HOST:PORT, {EXAMPLES}")]
    EmptyHost,
    /// An IPv6 address without brackets (its colons hide the port's).
    #[error("the host {0:?} has a ':': write an IPv6 address in brackets, like [::1]:7070")]
    Unbracketed(String),
    /// An IPv6 address with a scope id (`%2`), which no peer's URI can carry.
    #[error("{0} has an IPv6 scope id (%…): give a global or unique-local IPv6 address, or a name")]
    ScopeId(String),
    /// Brackets around something that is not an IPv6 address.
    #[error("[{0}] is not an IPv6 address: only an IPv6 address goes in brackets, like [::1]:7070")]
    NotIpv6(String),
    /// A character no DNS name has.
    #[error(
        "the host {host:?} has {character:?}, which no DNS name has: a name is letters, \
         digits, hyphens and dots; or give an IP address"
    )]
    BadCharacter {
        /// The host as written.
        host: String,
        /// The first character refused.
        character: char,
    },
    /// A name longer than DNS allows.
    #[error("the host has {0} characters: a DNS name has at most 253")]
    LongName(usize),
    /// Two dots in a row, or a dot first.
    #[error("the host {0:?} has an empty label: no dot first, and no two dots in a row")]
    EmptyLabel(String),
    /// A label longer than DNS allows.
    #[error(
        "the label {0:?} of the host has {len} characters: a DNS label has 1 to 63",
        len = .0.len()
    )]
    LongLabel(String),
    /// A label that starts or ends with a hyphen.
    #[error("the label {0:?} of the host starts or ends with '-', which a DNS label cannot")]
    Hyphen(String),
    /// A name whose last label is all digits, which resolvers read as an IPv4 address.
    #[error(
        "the host {0:?} is neither an IP address nor a DNS name (a name's last label is not \
         all digits)"
    )]
    NumericName(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Address {
        text.parse()
            .unwrap_or_else(|e| panic!("{text} parses: {e}"))
    }

    fn refused(text: &str) -> String {
        text.parse::<Address>().expect_err("refused").to_string()
    }

    #[test]
    fn names_and_ips_parse_and_show_as_written() {
        let name = parsed("Blue-0.blue.ns.svc.cluster.local:7070");
        assert_eq!(name.dns_name(), Some("Blue-0.blue.ns.svc.cluster.local"));
        assert_eq!((name.port(), name.ip()), (7070, None));
        assert_eq!(name.to_string(), "Blue-0.blue.ns.svc.cluster.local:7070");
        assert_eq!(name.normalised(), "blue-0.blue.ns.svc.cluster.local:7070");
        assert_eq!(name.listen_addr(), "0.0.0.0:7070".parse().expect("an addr"));
        for text in [
            "localhost:1",
            "blue-0.blue:65535",
            "node.:80",
            "a1b:9",
            "x--y.z:9",
        ] {
            assert_eq!(parsed(text).to_string(), text);
        }
        let v6 = parsed("[::1]:7070");
        assert_eq!(v6.ip(), Some("[::1]:7070".parse().expect("an addr")));
        assert_eq!(
            (v6.to_string(), v6.normalised()),
            ("[::1]:7070".into(), "[::1]:7070".into())
        );
        assert_eq!(v6.listen_addr(), v6.ip().expect("an IP"));
        assert_eq!(parsed("[0:0::1]:70").to_string(), "[::1]:70");
        let v4 = parsed("10.0.0.1:7070");
        assert_eq!(
            (v4.dns_name(), v4.to_string().as_str()),
            (None, "10.0.0.1:7070")
        );
        assert_eq!(Address::from(v4.listen_addr()), v4);
        assert_eq!(format!("[{:<12}]", parsed("a.b:1")), "[a.b:1       ]");
        assert_eq!(format!("[{:<12}]", v4), "[10.0.0.1:7070]");
    }

    #[test]
    fn a_bad_address_says_what_is_wrong() {
        let long_label = "a".repeat(64);
        let long_name = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(63),
        ]
        .join(".");
        for (text, wanted) in [
            (
                "localhost",
                "it has no port: write HOST:PORT, like 10.0.0.1:7070, [fd00::1]:7070 or \
                 blue-0.blue:7070",
            ),
            (
                ":70",
                "the host is empty: write HOST:PORT, like 10.0.0.1:7070, [fd00::1]:7070 or blue-0.blue:7070",
            ),
            ("a:0", "the port \"0\" is not a number from 1 to 65535"),
            (
                "10.0.0.1:0",
                "the port \"0\" is not a number from 1 to 65535",
            ),
            ("[::1]:0", "the port \"0\" is not a number from 1 to 65535"),
            (
                "a:70000",
                "the port \"70000\" is not a number from 1 to 65535",
            ),
            (
                "10.0.0.1:70000",
                "the port \"70000\" is not a number from 1 to 65535",
            ),
            ("a:+70", "the port \"+70\" is not a number from 1 to 65535"),
            ("a:", "the port \"\" is not a number from 1 to 65535"),
            (
                "::1:7070",
                "the host \"::1\" has a ':': write an IPv6 address in brackets, like [::1]:7070",
            ),
            (
                "[blue]:7070",
                "[blue] is not an IPv6 address: only an IPv6 address goes in brackets, like \
                 [::1]:7070",
            ),
            (
                "[fe80::1%2]:70",
                "[fe80::1%2]:70 has an IPv6 scope id (%…): give a global or unique-local IPv6 \
                 address, or a name",
            ),
            (
                "[::1]",
                "it has no port: write HOST:PORT, like 10.0.0.1:7070, [fd00::1]:7070 or blue-0.blue:7070",
            ),
            (
                "bad_host!:70",
                "the host \"bad_host!\" has '_', which no DNS name has: a name is letters, \
                 digits, hyphens and dots; or give an IP address",
            ),
            (
                "a..b:70",
                "the host \"a..b\" has an empty label: no dot first, and no two dots in a row",
            ),
            (
                "-a.b:70",
                "the label \"-a\" of the host starts or ends with '-', which a DNS label cannot",
            ),
            (
                "10.0.0.256:70",
                "the host \"10.0.0.256\" is neither an IP address nor a DNS name (a name's last \
                 label is not all digits)",
            ),
        ] {
            assert_eq!(refused(text), wanted, "{text}");
        }
        assert_eq!(
            refused(&format!("{long_label}.b:70")),
            format!(
                "the label \"{long_label}\" of the host has 64 characters: a DNS label has 1 to 63"
            )
        );
        assert_eq!(
            refused(&format!("{long_name}:70")),
            "the host has 255 characters: a DNS name has at most 253"
        );
    }
}
