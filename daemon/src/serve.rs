//! Serving an HTTP handler on an already-bound listener (HTTP/1.1 and h2c), with graceful
//! shutdown: once cancelled, stop accepting, let open connections finish the request they
//! are on, then return.

use std::{convert::Infallible, error::Error as StdError, future::Future, net::SocketAddr};

use http::{Request, Response};
use hyper::{
    body::{Body, Incoming},
    service::service_fn,
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves `handler` on `listener` until `cancel` fires, then drains open connections.
pub async fn serve_http<F, Fut, B>(listener: TcpListener, cancel: CancellationToken, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    serve_http_from(listener, cancel, move |_peer| handler.clone()).await;
}

/// [`serve_http`] for handlers that need the client's address (a proxy's `X-Forwarded-For`):
/// `connection(peer)` makes the handler of each accepted connection.
pub async fn serve_http_from<C, F, Fut, B>(
    listener: TcpListener,
    cancel: CancellationToken,
    connection: C,
) where
    C: Fn(SocketAddr) -> F,
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, peer) = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE or a connection reset before accept: this connection only.
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            },
        };
        // Small request/response exchanges: do not wait to coalesce packets.
        let _ = stream.set_nodelay(true);
        let connection = builder
            .serve_connection(TokioIo::new(stream), service_fn(connection(peer)))
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
