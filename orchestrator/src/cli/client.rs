//! The operator's connection to the orchestrator: the address, the bearer token on every
//! call, and what a gRPC failure means for the operator (see [`classify`]).

use std::{path::Path, time::Duration};

use cutover_daemon::auth::read_token_file;
use cutover_proto::v1::{
    AbortRequest, ProceedRequest, ProgressEvent, RollbackRequest, StartRequest, StartResponse,
    StatusRequest, UpgradeStatus, WatchRequest, orchestrator_client::OrchestratorClient,
};
use tonic::{
    Code, Request, Status, Streaming,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

use super::CliError;

/// How long connecting may take before the orchestrator counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Adds `authorization: Bearer <token>` to every call when a token was given.
#[derive(Debug, Clone)]
pub(super) struct BearerHeader(Option<MetadataValue<Ascii>>);

impl Interceptor for BearerHeader {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A connected Orchestrator client whose calls fail with [`CliError`]s.
#[derive(Debug)]
pub(super) struct Orchestrator {
    client: OrchestratorClient<InterceptedService<Channel, BearerHeader>>,
    address: String,
}

impl Orchestrator {
    /// Reads the token (if any), then connects to `address` (`http://` is assumed when it
    /// has no scheme).
    pub(super) async fn connect(
        address: &str,
        token_file: Option<&Path>,
    ) -> Result<Self, CliError> {
        let header = match token_file {
            None => BearerHeader(None),
            Some(path) => {
                let token = read_token_file(path)?;
                let value =
                    format!("Bearer {token}")
                        .parse()
                        .map_err(|_| CliError::TokenNotAscii {
                            path: path.to_owned(),
                        })?;
                BearerHeader(Some(value))
            }
        };
        let uri = with_scheme(address);
        let tls = cutover_daemon::tls::ClientTls::current();
        if header.0.is_some() {
            tls.check_token(&uri, "the token of --token-file")
                .map_err(|e| CliError::Failed(anyhow::anyhow!(e)))?;
        }
        let endpoint = cutover_proto::endpoint(uri.clone())
            .map_err(|source| CliError::BadAddress {
                address: address.to_owned(),
                source,
            })?
            .connect_timeout(CONNECT_TIMEOUT);
        let endpoint = tls
            .endpoint(endpoint, &uri)
            .map_err(|e| CliError::Failed(anyhow::anyhow!(e)))?;
        if cutover_daemon::tls::is_https(&uri) {
            tls.preflight(&uri, CONNECT_TIMEOUT)
                .await
                .map_err(|advice| CliError::Tls {
                    address: address.to_owned(),
                    advice,
                })?;
        }
        let channel =
            endpoint.connect().await.map_err(|source| {
                match cutover_daemon::tls::explain(&source) {
                    Some(advice) => CliError::Tls {
                        address: address.to_owned(),
                        advice,
                    },
                    None => CliError::Unreachable {
                        address: address.to_owned(),
                        source: Box::new(source),
                    },
                }
            })?;
        Ok(Self {
            client: OrchestratorClient::with_interceptor(channel, header),
            address: address.to_owned(),
        })
    }

    /// `Orchestrator.Start`.
    pub(super) async fn start(&mut self, request: StartRequest) -> Result<StartResponse, CliError> {
        let answer = self.client.start(request).await;
        self.answer("Start", answer)
    }

    /// `Orchestrator.Status`.
    pub(super) async fn status(&mut self) -> Result<UpgradeStatus, CliError> {
        let answer = self.client.status(StatusRequest {}).await;
        self.answer("Status", answer)
    }

    /// `Orchestrator.Proceed`.
    pub(super) async fn proceed(&mut self) -> Result<UpgradeStatus, CliError> {
        let answer = self.client.proceed(ProceedRequest {}).await;
        self.answer("Proceed", answer)
    }

    /// `Orchestrator.Abort`.
    pub(super) async fn abort(&mut self, reason: String) -> Result<UpgradeStatus, CliError> {
        let answer = self.client.abort(AbortRequest { reason }).await;
        self.answer("Abort", answer)
    }

    /// `Orchestrator.Rollback`.
    pub(super) async fn rollback(
        &mut self,
        discard_green_writes: bool,
        confirmed: bool,
    ) -> Result<UpgradeStatus, CliError> {
        let request = RollbackRequest {
            discard_green_writes,
            confirmed,
        };
        let answer = self.client.rollback(request).await;
        self.answer("Rollback", answer)
    }

    /// `Orchestrator.Watch`: the stream, to read with [`Orchestrator::next_event`].
    pub(super) async fn watch(&mut self) -> Result<Streaming<ProgressEvent>, CliError> {
        let answer = self.client.watch(WatchRequest {}).await;
        self.answer("Watch", answer)
    }

    /// The next event of a Watch stream; `None` when the orchestrator ended it.
    pub(super) async fn next_event(
        &self,
        stream: &mut Streaming<ProgressEvent>,
    ) -> Result<Option<ProgressEvent>, CliError> {
        stream
            .message()
            .await
            .map_err(|status| classify(&self.address, "Watch", status))
    }

    fn answer<T>(
        &self,
        call: &'static str,
        answer: Result<tonic::Response<T>, Status>,
    ) -> Result<T, CliError> {
        answer
            .map(tonic::Response::into_inner)
            .map_err(|status| classify(&self.address, call, status))
    }
}

/// `address` with `http://` in front when it names no scheme (`127.0.0.1:7171`).
fn with_scheme(address: &str) -> String {
    if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    }
}

/// What a failed call means for the operator: UNAVAILABLE raised by the transport (it carries
/// the transport's error) is the orchestrator out of reach (exit 3), while UNAVAILABLE the
/// orchestrator answered is one of its peers out of reach, which its message names (exit 1);
/// UNAUTHENTICATED is a token problem; the refusal codes carry the server's advice as is.
pub(super) fn classify(address: &str, call: &'static str, status: Status) -> CliError {
    if let Some(advice) = cutover_daemon::tls::explain(&status) {
        return CliError::Tls {
            address: address.to_owned(),
            advice,
        };
    }
    if status.code() == Code::Unauthenticated && status.message().contains("client certificate") {
        return CliError::Tls {
            address: address.to_owned(),
            advice: status.message().to_owned(),
        };
    }
    match status.code() {
        Code::Unavailable if std::error::Error::source(&status).is_none() => CliError::Rpc {
            call,
            code: Code::Unavailable,
            message: status.message().to_owned(),
        },
        Code::Unavailable => CliError::Unreachable {
            address: address.to_owned(),
            source: Box::new(status),
        },
        Code::Unauthenticated => CliError::Unauthenticated {
            address: address.to_owned(),
            message: status.message().to_owned(),
        },
        code @ (Code::InvalidArgument | Code::AlreadyExists | Code::FailedPrecondition) => {
            CliError::Refused {
                code,
                message: status.message().to_owned(),
            }
        }
        code => CliError::Rpc {
            call,
            code,
            message: status.message().to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::codes;

    #[test]
    fn failures_map_to_exit_codes_by_grpc_code() {
        let exit = |status| classify("http://o:1", "Start", status).exit_code();
        // (A transport failure is `a_closed_port_is_unreachable`.) The orchestrator answered: a node it needs is down, not the orchestrator.
        assert_eq!(
            exit(Status::unavailable("blue-1: dns error")),
            codes::FAILED
        );
        assert_eq!(exit(Status::unauthenticated("wrong token")), codes::FAILED);
        assert_eq!(exit(Status::invalid_argument("plan.toml:3")), codes::FAILED);
        assert_eq!(exit(Status::already_exists("u1")), codes::FAILED);
        assert_eq!(exit(Status::failed_precondition("no")), codes::FAILED);
        assert_eq!(exit(Status::internal("bug")), codes::FAILED);
    }

    #[test]
    fn refusals_show_the_server_message_as_is() {
        let error = classify(
            "http://o:1",
            "Start",
            Status::invalid_argument("plan.toml line 3: unknown field `sorce`"),
        );
        assert_eq!(error.to_string(), "plan.toml line 3: unknown field `sorce`");
        let error = classify(
            "http://o:1",
            "Status",
            Status::unauthenticated("wrong token"),
        );
        assert!(error.to_string().contains("--token-file"), "{error}");
    }

    #[test]
    fn addresses_without_scheme_get_http() {
        assert_eq!(with_scheme("127.0.0.1:7171"), "http://127.0.0.1:7171");
        assert_eq!(with_scheme("http://h:1"), "http://h:1");
    }

    #[test]
    fn the_interceptor_adds_the_bearer_token() {
        let mut header = BearerHeader(Some("Bearer s3cret".parse().expect("ascii")));
        let request = header.call(Request::new(())).expect("admitted");
        assert_eq!(
            request.metadata().get("authorization").expect("header"),
            "Bearer s3cret"
        );
        let request = BearerHeader(None).call(Request::new(())).expect("admitted");
        assert!(request.metadata().get("authorization").is_none());
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = format!("http://{}", listener.local_addr().expect("addr"));
        drop(listener);
        let error = Orchestrator::connect(&address, None)
            .await
            .expect_err("nothing listens");
        assert_eq!(error.exit_code(), codes::UNREACHABLE, "{error}");
        assert!(error.to_string().contains(&address), "{error}");
    }
}
