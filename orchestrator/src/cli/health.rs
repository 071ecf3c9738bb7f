//! `cutover health URL`: exit 0 when the URL answers 200, for container health checks in
//! images that carry no curl.

use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http::{Request, StatusCode, Uri};
use http_body_util::Full;

use super::{CliError, values};
use crate::demo::load::{Answer, HttpClient, exchange};

/// `cutover health`.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  cutover health http://127.0.0.1:7070/healthz")]
pub struct HealthArgs {
    /// The URL to ask, e.g. http://127.0.0.1:7070/healthz (https:// with --tls-ca). The image's
    /// HEALTHCHECK runs `cutover health` with the URL in CUTOVER_HEALTH_URL, so one image
    /// serves every role: set it to the role's port.
    #[arg(env = "CUTOVER_HEALTH_URL")]
    pub url: Uri,
    /// Print the status on one line and the body after it (exit status as without).
    #[arg(long)]
    pub print: bool,
    /// Longest wait for the answer.
    #[arg(long, default_value = "2s", value_parser = values::positive_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub tls: super::ClientTlsArgs,
}

pub(super) async fn run(args: HealthArgs) -> Result<(), CliError> {
    let scheme = args.url.scheme_str();
    if !matches!(scheme, Some("http" | "https")) || args.url.host().is_none() {
        return Err(anyhow::anyhow!(
            "{}: write the URL as http://HOST:PORT/PATH or https://HOST:PORT/PATH",
            args.url
        )
        .into());
    }
    cutover_daemon::tls::ClientTls::load(args.tls.tls_ca.as_deref(), None, false)
        .map_err(anyhow::Error::from)?
        .install();
    if scheme == Some("https") && args.tls.tls_ca.is_none() {
        return Err(anyhow::anyhow!("{}: give --tls-ca to verify the server", args.url).into());
    }
    let client: HttpClient = crate::demo::load::http_client();
    let request = Request::get(args.url.clone())
        .body(Full::new(Bytes::new()))
        .map_err(anyhow::Error::from)?;
    let Answer { status, body, .. } =
        tokio::time::timeout(args.timeout, exchange(&client, request))
            .await
            .map_err(|_| anyhow::anyhow!("{}: no answer in {:?}", args.url, args.timeout))?
            .map_err(|error| anyhow::anyhow!("{}: cannot connect: {error}", args.url))?;
    if args.print {
        println!("{}\n{}", status.as_u16(), String::from_utf8_lossy(&body));
    }
    if status != StatusCode::OK {
        return Err(anyhow::anyhow!("{}: answered {status}", args.url).into());
    }
    Ok(())
}
