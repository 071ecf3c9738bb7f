//! The upgrade plan: a TOML file the operator writes, parsed strictly (an unknown or misspelt
//! field is an error, never ignored) and checked whole before anything starts. Every error
//! names the file, the field and what to write instead.
//!
//! ```toml
//! pause_budget = "500ms"             # longest pause clients may see (default 500ms)
//! max_cycles = 20                    # give up after this many cycles (default 20)
//! deadline = "2h"                    # give up after this long (default: none)
//! allowed_transform_failures = 0     # dead letters tolerated at cutover (default 0)
//! postpone = false                   # hold at the threshold until `proceed` (default false)
//! batch_documents = 2000             # documents per pull/apply batch (default 2000)
//! batch_bytes = 1048576              # body bytes per batch (default 1 MiB)
//! parallel_pipelines = 0             # pipelines copying at once (default 0: all of them)
//!
//! [blue]
//! sources = ["http://10.0.0.1:7001"] # gRPC Source of every blue node (a cluster: all of them)
//! token_file = "/etc/cutover/blue.token"
//!
//! [green]
//! sinks = ["http://10.0.0.2:7001"]   # gRPC Sink of every green node (any number: N → M)
//!
//! [proxies]
//! control = ["http://10.0.0.3:9101"] # ProxyControl of every proxy
//!
//! [collections.users]
//! forward = '.schema = 2'            # jq, blue → green (default: identity)
//! reverse = 'del(.schema)'           # jq, green → blue, for rollback (default: none)
//! rename = "people"                  # the collection's name on green (default: same)
//!
//! [collections.accounts]
//! forward_native = "split_name"      # a native transform the embedder registered, instead
//! reverse_native = "join_name"       # of a program (`forward`/`reverse`); by name
//! ```
//!
//! A `*_native` name is resolved by the engine that runs the plan, against the native
//! transforms its process registered (`Engine::builder().native(..)`): the plan check only
//! sees that it is a name, the engine's start refuses one it does not know.

use std::{collections::BTreeMap, net::Ipv6Addr, path::PathBuf, time::Duration};

use serde::Deserialize;

/// Default longest pause.
pub const DEFAULT_PAUSE_BUDGET: Duration = Duration::from_millis(500);
/// Default cycle limit.
pub const DEFAULT_MAX_CYCLES: u32 = 20;
/// Default documents per batch.
pub const DEFAULT_BATCH_DOCUMENTS: u32 = 2_000;
/// Default body bytes per batch.
pub const DEFAULT_BATCH_BYTES: u64 = 1 << 20;
/// Largest body bytes per batch (gRPC clients refuse messages over 4 MiB by default).
pub const MAX_BATCH_BYTES: u64 = 3 << 20;

/// A checked upgrade plan.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The longest pause clients may see: the final cycle plus the switch.
    #[serde(default = "default_pause_budget", deserialize_with = "duration")]
    pub pause_budget: Duration,
    /// Cycles after which the upgrade gives up if the delta never fits.
    #[serde(default = "default_max_cycles")]
    pub max_cycles: u32,
    /// Time after which the upgrade gives up.
    #[serde(default, deserialize_with = "optional_duration")]
    pub deadline: Option<Duration>,
    /// Transform failures (dead letters) that may remain at cutover.
    #[serde(default)]
    pub allowed_transform_failures: u64,
    /// Hold at the threshold until the operator says `proceed`.
    #[serde(default)]
    pub postpone: bool,
    /// Documents per pull and apply batch.
    #[serde(default = "default_batch_documents")]
    pub batch_documents: u32,
    /// Body bytes per pull and apply batch.
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: u64,
    /// Pipelines (one per blue node and green node that share partitions) copying at once;
    /// 0 for all of them.
    #[serde(default)]
    pub parallel_pipelines: u32,
    /// The old version.
    pub blue: Blue,
    /// The new version.
    pub green: Green,
    /// The proxies in front of the service (needed to cut over, not to copy).
    #[serde(default)]
    pub proxies: Proxies,
    /// Per-collection transforms; a collection not listed is copied as is.
    #[serde(default)]
    pub collections: BTreeMap<String, CollectionPlan>,
}

/// Blue's nodes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Blue {
    /// gRPC `Source` endpoint of every blue node.
    pub sources: Vec<String>,
    /// Bearer token for blue's control RPCs (`NodeAdmin`).
    pub token_file: Option<PathBuf>,
}

/// Green's nodes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Green {
    /// gRPC `Sink` endpoint of every green node.
    pub sinks: Vec<String>,
    /// Bearer token for green's `Sink` and `NodeAdmin`.
    pub token_file: Option<PathBuf>,
}

/// The proxies.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proxies {
    /// gRPC `ProxyControl` endpoint of every proxy.
    #[serde(default)]
    pub control: Vec<String>,
    /// Bearer token for `ProxyControl`.
    pub token_file: Option<PathBuf>,
}

/// How one collection crosses.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionPlan {
    /// jq program from blue's body to green's; identity when absent (and no
    /// `forward_native`).
    pub forward: Option<String>,
    /// jq program from green's body back to blue's; without it (or a `reverse_native`), a
    /// rollback would lose green's writes to this collection.
    pub reverse: Option<String>,
    /// Name of a native transform from blue's body to green's, registered by the program
    /// that embeds the engine; instead of `forward`.
    pub forward_native: Option<String>,
    /// Name of a native transform from green's body back to blue's; instead of `reverse`.
    pub reverse_native: Option<String>,
    /// The collection's name on green.
    pub rename: Option<String>,
}

impl CollectionPlan {
    /// Whether documents change on the way to green (a program or a native transform).
    pub fn transforms_forward(&self) -> bool {
        self.forward.is_some() || self.forward_native.is_some()
    }

    /// Whether green's documents can be carried back (a program or a native transform).
    pub fn carries_back(&self) -> bool {
        self.reverse.is_some() || self.reverse_native.is_some()
    }
}

/// A plan that cannot be used, and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}: {what}")]
pub struct PlanError {
    /// The plan's file name.
    pub file: String,
    /// The field and what is wrong with it (with line and column for syntax errors).
    pub what: String,
}

/// A duration written as text: "500ms", "2s", "1h 30m".
fn duration<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "{text:?} is not a duration ({e}): write e.g. \"500ms\", \"2s\" or \"1h 30m\""
        ))
    })
}

fn optional_duration<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

fn default_pause_budget() -> Duration {
    DEFAULT_PAUSE_BUDGET
}
fn default_max_cycles() -> u32 {
    DEFAULT_MAX_CYCLES
}
fn default_batch_documents() -> u32 {
    DEFAULT_BATCH_DOCUMENTS
}
fn default_batch_bytes() -> u64 {
    DEFAULT_BATCH_BYTES
}

impl Plan {
    /// Parses and checks the TOML text of the plan read from `file` (used in errors).
    pub fn parse(file: &str, text: &str) -> Result<Self, PlanError> {
        let error = |what: String| PlanError {
            file: file.to_owned(),
            what,
        };
        let plan: Self = toml::from_str(text).map_err(|e| error(syntax(text, &e)))?;
        plan.check().map_err(error)?;
        Ok(plan)
    }

    /// The name a blue collection has on green.
    pub fn green_name<'a>(&'a self, collection: &'a str) -> &'a str {
        self.collections
            .get(collection)
            .and_then(|c| c.rename.as_deref())
            .unwrap_or(collection)
    }

    /// Green names of the collections a rollback cannot carry back: a forward transform (a
    /// program or a native one) and no reverse one.
    pub fn unreversible(&self) -> Vec<String> {
        self.collections
            .iter()
            .filter(|(_, c)| c.transforms_forward() && !c.carries_back())
            .map(|(name, _)| self.green_name(name).to_owned())
            .collect()
    }

    /// A collection the plan renames, if any.
    pub fn renamed(&self) -> Option<String> {
        self.collections
            .iter()
            .find(|(_, c)| c.rename.is_some())
            .map(|(name, _)| name.clone())
    }

    fn check(&self) -> Result<(), String> {
        if self.pause_budget.is_zero() {
            return Err("pause_budget: must be more than 0 (e.g. \"500ms\")".into());
        }
        if self.max_cycles == 0 {
            return Err("max_cycles: must be at least 1".into());
        }
        if self.deadline.is_some_and(|d| d.is_zero()) {
            return Err("deadline: must be more than 0 (e.g. \"2h\"), or left out".into());
        }
        if self.batch_documents == 0 {
            return Err("batch_documents: must be at least 1".into());
        }
        if !(1..=MAX_BATCH_BYTES).contains(&self.batch_bytes) {
            return Err(format!(
                "batch_bytes: {} is out of range: use 1 to {MAX_BATCH_BYTES}",
                self.batch_bytes
            ));
        }
        endpoints("blue.sources", &self.blue.sources, true)?;
        endpoints("green.sinks", &self.green.sinks, true)?;
        endpoints("proxies.control", &self.proxies.control, false)?;
        for source in &self.blue.sources {
            if self.green.sinks.contains(source) {
                return Err(format!(
                    "green.sinks: {source} is also in blue.sources: blue and green must be \
                     different nodes"
                ));
            }
        }
        let mut targets: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, collection) in &self.collections {
            if !valid_collection(name) {
                return Err(format!(
                    "collections.{name}: not a collection name: use 1 to 128 of A-Z a-z 0-9 _ . -"
                ));
            }
            for (field, program) in [
                ("forward", &collection.forward),
                ("reverse", &collection.reverse),
            ] {
                if program.as_deref().is_some_and(|p| p.trim().is_empty()) {
                    return Err(format!(
                        "collections.{name}.{field}: empty program: leave the field out for \
                         identity"
                    ));
                }
            }
            natives(name, collection)?;
            if let Some(rename) = &collection.rename
                && !valid_collection(rename)
            {
                return Err(format!(
                    "collections.{name}.rename: {rename:?} is not a collection name: use 1 to \
                     128 of A-Z a-z 0-9 _ . -"
                ));
            }
        }
        // Two blue collections must not land in one green collection (a listed one renamed
        // onto an unlisted one is caught when the engine discovers blue's collections).
        for name in self.collections.keys() {
            let target = self.green_name(name);
            if let Some(other) = targets.insert(target, name) {
                return Err(format!(
                    "collections.{name}.rename: {other} and {name} would both become {target} on \
                     green"
                ));
            }
        }
        Ok(())
    }
}

/// A direction takes a program or a native transform, not both; a native's name is not empty.
fn natives(name: &str, collection: &CollectionPlan) -> Result<(), String> {
    for (program, native, field) in [
        (&collection.forward, &collection.forward_native, "forward"),
        (&collection.reverse, &collection.reverse_native, "reverse"),
    ] {
        let Some(native) = native else {
            continue;
        };
        if program.is_some() {
            return Err(format!(
                "collections.{name}: {field} and {field}_native are both given: keep one, the \
                 jq program or the native transform"
            ));
        }
        if native.trim().is_empty() {
            return Err(format!(
                "collections.{name}.{field}_native: empty name: give the name the native \
                 transform is registered under, or leave the field out for identity"
            ));
        }
    }
    Ok(())
}

fn valid_collection(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Checks a list of gRPC endpoints: `http://` or `https://` with a host and a port, no
/// duplicates, and at least one when `required`.
fn endpoints(field: &str, list: &[String], required: bool) -> Result<(), String> {
    if required && list.is_empty() {
        return Err(format!(
            "{field}: lists no endpoint: give at least one, e.g. [\"http://10.0.0.1:7001\"]"
        ));
    }
    for (i, url) in list.iter().enumerate() {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        let authority = rest.map(|r| r.trim_end_matches('/'));
        let has_port = authority
            .and_then(|a| a.rsplit_once(':'))
            .is_some_and(|(host, port)| valid_host(host) && valid_port(port));
        if !has_port || authority.is_some_and(|a| a.contains('/')) {
            return Err(format!(
                "{field}[{i}]: {url:?} is not a gRPC endpoint: write http://HOST:PORT \
                 (or https://)"
            ));
        }
        if list[..i].contains(url) {
            return Err(format!("{field}[{i}]: {url} is listed twice"));
        }
    }
    Ok(())
}

/// A DNS name or an IPv4 address, or an IPv6 address in brackets: what the engine's URI
/// parser takes (the fuzzer found hosts such as ``12`.0.0.1`` that passed here and failed only
/// when the upgrade dialled them).
fn valid_host(host: &str) -> bool {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(ip) => ip.parse::<Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        }
    }
}

/// Digits only: `u16::from_str` also takes `+80`, which a URI does not.
fn valid_port(port: &str) -> bool {
    !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok()
}

/// A TOML or schema error as "line L, column C: message".
fn syntax(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests;
