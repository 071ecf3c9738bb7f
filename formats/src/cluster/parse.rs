//! Reading a cluster file and the checks every cluster passes, with the line of each finding.

use std::collections::HashMap;

use serde::Deserialize;
use toml::Spanned;

use super::{
    Address, Cluster, ClusterError, Lines, Member, Problem,
    ranges::{self, Ranges},
};

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    partitions: Spanned<i64>,
    #[serde(default)]
    node: Vec<RawNode>,
}

/// One `[[node]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Spanned<String>,
    http: Spanned<String>,
    grpc: Spanned<String>,
    owns: Spanned<String>,
}

/// Parses `text` (the file at `path`) into a checked cluster.
pub(super) fn parse(text: &str, path: &str) -> Result<Cluster, ClusterError> {
    let line = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let raw: RawFile = toml::from_str(text).map_err(|error| {
        ClusterError::new(
            path,
            error.span().map(|span| line(span.start)),
            Problem::Syntax(error.message().trim().to_owned()),
        )
    })?;
    let mut entries = Vec::with_capacity(raw.node.len());
    for node in raw.node {
        let lines = Lines {
            name: Some(line(node.name.span().start)),
            http: Some(line(node.http.span().start)),
            grpc: Some(line(node.grpc.span().start)),
            owns: Some(line(node.owns.span().start)),
        };
        let name = node.name.into_inner();
        let address = |field: &'static str, value: Spanned<String>, at: Option<usize>| {
            let value = value.into_inner();
            value.trim().parse::<Address>().map_err(|reason| {
                let problem = Problem::BadAddress {
                    name: name.clone(),
                    field,
                    reason,
                    value: value.clone(),
                };
                ClusterError::new(path, at, problem)
            })
        };
        let http = address("http", node.http, lines.http)?;
        let grpc = address("grpc", node.grpc, lines.grpc)?;
        let text = node.owns.into_inner();
        let owns = ranges::parse(&text).map_err(|problem| {
            let problem = Problem::BadRange {
                name: name.clone(),
                text: text.clone(),
                problem: problem.to_string(),
            };
            ClusterError::new(path, lines.owns, problem)
        })?;
        entries.push((
            Member {
                name,
                http,
                grpc,
                owns,
            },
            lines,
        ));
    }
    let partitions_line = Some(line(raw.partitions.span().start));
    Cluster::build(path, *raw.partitions.get_ref(), partitions_line, entries)
}

/// Whether `name` is usable: it travels in HTTP headers and log lines.
fn usable_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Checks every node of a cluster of `count` partitions; returns the index of each
/// partition's owner.
pub(super) fn check(
    path: &str,
    count: u32,
    entries: &[(Member, Lines)],
) -> Result<Vec<u32>, ClusterError> {
    if entries.is_empty() {
        return Err(ClusterError::new(path, None, Problem::NoNodes));
    }
    check_names_and_addresses(path, entries)?;
    let mut owners: Vec<Option<u32>> = vec![None; count as usize];
    for (index, (member, lines)) in entries.iter().enumerate() {
        check_owns(path, count, member, lines)?;
        // Partitions this node shares with each earlier one, by the earlier one's index.
        let mut shared: Vec<(u32, u32)> = Vec::new();
        for &partition in &member.owns {
            let slot = &mut owners[partition as usize];
            match *slot {
                Some(first) => shared.push((first, partition)),
                None => *slot = Some(index as u32),
            }
        }
        if let Some(&(first, _)) = shared.iter().min() {
            let (other, other_lines) = &entries[first as usize];
            let problem = Problem::Overlap {
                partitions: Ranges::new(
                    shared
                        .iter()
                        .filter(|(f, _)| *f == first)
                        .map(|(_, p)| *p)
                        .collect(),
                ),
                first: other.name.clone(),
                first_line: other_lines.owns,
                second: member.name.clone(),
            };
            return Err(ClusterError::new(path, lines.owns, problem));
        }
    }
    let gaps: Vec<u32> = (0..count)
        .filter(|p| owners[*p as usize].is_none())
        .collect();
    if !gaps.is_empty() {
        return Err(ClusterError::new(
            path,
            None,
            Problem::Gap(Ranges::new(gaps)),
        ));
    }
    Ok(owners
        .into_iter()
        .map(|o| o.expect("every partition has an owner: checked just above"))
        .collect())
}

/// Names usable and unique; every service on an address of its own (compared normalised:
/// `Blue-0.blue:7070` is `blue-0.blue:7070`; whether a name and an IP are one host is not
/// known until connecting, so they are never taken for one).
fn check_names_and_addresses(path: &str, entries: &[(Member, Lines)]) -> Result<(), ClusterError> {
    let mut names: HashMap<&str, Option<usize>> = HashMap::new();
    let mut addresses: HashMap<String, (String, Option<usize>)> = HashMap::new();
    for (member, lines) in entries {
        if !usable_name(&member.name) {
            return Err(ClusterError::new(
                path,
                lines.name,
                Problem::BadName(member.name.clone()),
            ));
        }
        if let Some(first_line) = names.insert(&member.name, lines.name) {
            let problem = Problem::DuplicateName {
                name: member.name.clone(),
                first_line,
            };
            return Err(ClusterError::new(path, lines.name, problem));
        }
        for (field, addr, line) in [
            ("http", &member.http, lines.http),
            ("grpc", &member.grpc, lines.grpc),
        ] {
            let this = (format!("{} ({field})", member.name), line);
            if let Some((other, other_line)) = addresses.insert(addr.normalised(), this) {
                let problem = Problem::SharedAddress {
                    name: member.name.clone(),
                    field,
                    addr: addr.clone(),
                    other,
                    other_line,
                };
                return Err(ClusterError::new(path, line, problem));
            }
        }
    }
    Ok(())
}

/// One node's partitions: some, each once, each below `count`.
fn check_owns(path: &str, count: u32, member: &Member, lines: &Lines) -> Result<(), ClusterError> {
    if member.owns.is_empty() {
        return Err(ClusterError::new(
            path,
            lines.owns.or(lines.name),
            Problem::OwnsNothing(member.name.clone()),
        ));
    }
    let beyond: Vec<u32> = member
        .owns
        .iter()
        .copied()
        .filter(|p| *p >= count)
        .collect();
    if !beyond.is_empty() {
        let problem = Problem::OutOfRange {
            name: member.name.clone(),
            partitions: Ranges::new(beyond),
            count,
        };
        return Err(ClusterError::new(path, lines.owns, problem));
    }
    let mut sorted = member.owns.clone();
    sorted.sort_unstable();
    let repeated: Vec<u32> = sorted
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect();
    if !repeated.is_empty() {
        let problem = Problem::Repeated {
            name: member.name.clone(),
            partitions: Ranges::new(repeated),
        };
        return Err(ClusterError::new(path, lines.owns, problem));
    }
    Ok(())
}
