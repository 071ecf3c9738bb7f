//! `cutover cluster`: write a balanced cluster file, or check one.

use std::{io::Write as _, path::PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use cutover_node::cluster::{Address, Cluster, Ranges};

use super::CliError;

/// `cutover cluster`: cluster files.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    cutover cluster init --partitions 64 blue-1=10.0.0.1:7070,10.0.0.1:7071 \\\n    \
    blue-2=10.0.0.2:7070,10.0.0.2:7071 --output blue.toml\n  \
    cutover cluster init blue-0=blue-0.blue:7070,blue-0.blue:7071 \\\n    \
    blue-1=blue-1.blue:7070,blue-1.blue:7071 --output blue.toml\n  \
    cutover cluster check blue.toml")]
pub struct ClusterArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ClusterCommand,
}

/// The `cutover cluster` commands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Write a cluster file sharing the partitions among the nodes in contiguous ranges, as
    /// evenly as they divide.
    #[command(after_help = "Example:\n  \
        cutover cluster init --partitions 64 blue-1=10.0.0.1:7070,10.0.0.1:7071 \\\n    \
        blue-2=10.0.0.2:7070,10.0.0.2:7071 blue-3=10.0.0.3:7070,10.0.0.3:7071 --output blue.toml\n  \
        cutover cluster init blue-0=blue-0.blue:7070,blue-0.blue:7071 \\\n    \
        blue-1=blue-1.blue:7070,blue-1.blue:7071 --output blue.toml")]
    Init(InitArgs),
    /// Check a cluster file; print its hash and which node owns which partitions.
    #[command(after_help = "Example:\n  cutover cluster check blue.toml")]
    Check(CheckArgs),
}

/// `cutover cluster init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The partition count P, shared by every node of both colours (the node's --partitions).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub partitions: u32,
    /// The nodes, each as NAME=HTTP_ADDR,GRPC_ADDR (e.g. blue-1=10.0.0.1:7070,10.0.0.1:7071
    /// or blue-0=blue-0.blue:7070,blue-0.blue:7071): its name, where the others reach its
    /// HTTP API, and its gRPC services, each HOST:PORT with HOST an IP address or a DNS name.
    #[arg(required = true, value_name = "NODE", value_parser = node_spec)]
    pub nodes: Vec<(String, Address, Address)>,
    /// Write the file here (refused when it exists) instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// `cutover cluster check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The cluster file.
    pub file: PathBuf,
}

/// Parses `NAME=HTTP_ADDR,GRPC_ADDR`.
fn node_spec(value: &str) -> Result<(String, Address, Address), String> {
    let usage = "write a node as NAME=HTTP_ADDR,GRPC_ADDR, e.g. blue-1=10.0.0.1:7070,10.0.0.1:7071 \
                 or blue-0=blue-0.blue:7070,blue-0.blue:7071";
    let (name, addresses) = value
        .split_once('=')
        .ok_or_else(|| format!("{value:?} has no '=': {usage}"))?;
    let (http, grpc) = addresses
        .split_once(',')
        .ok_or_else(|| format!("{value:?} has no ',' between its two addresses: {usage}"))?;
    let address = |text: &str, what: &str| {
        text.trim()
            .parse::<Address>()
            .map_err(|e| format!("the {what} address {text:?} of {name} is not usable: {e}"))
    };
    Ok((
        name.trim().to_owned(),
        address(http, "HTTP")?,
        address(grpc, "gRPC")?,
    ))
}

pub(super) fn run(args: ClusterArgs) -> Result<(), CliError> {
    match args.command {
        ClusterCommand::Init(init) => {
            let cluster =
                Cluster::balanced(init.partitions, init.nodes).map_err(anyhow::Error::from)?;
            let text = cluster.to_toml();
            match &init.output {
                None => print!("{text}"),
                Some(path) => {
                    let mut file = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(path)
                        .with_context(|| {
                            format!(
                                "cannot create {} (an existing file is never replaced)",
                                path.display()
                            )
                        })?;
                    file.write_all(text.as_bytes())
                        .and_then(|()| file.sync_all())
                        .with_context(|| format!("writing {}", path.display()))?;
                    println!(
                        "wrote {}: {} nodes, {} partitions, hash {}",
                        path.display(),
                        cluster.members().len(),
                        cluster.partitions(),
                        cluster.hash()
                    );
                }
            }
        }
        ClusterCommand::Check(check) => {
            let cluster = Cluster::load(&check.file).map_err(anyhow::Error::from)?;
            println!(
                "{}: {} nodes, {} partitions, hash {}",
                cluster.source(),
                cluster.members().len(),
                cluster.partitions(),
                cluster.hash()
            );
            for m in cluster.members() {
                println!(
                    "  {:<16} http {:<21} grpc {:<21} owns {} ({})",
                    m.name,
                    m.http,
                    m.grpc,
                    Ranges::new(m.owns.clone()),
                    m.owns.len()
                );
            }
        }
    }
    Ok(())
}
