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
use tokio::net::{TcpListener, TcpStream};
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
    let builder = auto::Builder::new(TokioExecutor::new());
    accept(listener, cancel, |stream, _peer, graceful| {
        let connection = builder
            .serve_connection(TokioIo::new(stream), service_fn(handler.clone()))
            .into_owned();
        tokio::spawn(finish(graceful.watch(connection)));
    })
    .await;
}

/// Accepts connections on `listener` until `cancel` fires, handing each one (`TCP_NODELAY`
/// set) to `connection`, which serves it and watches it with the `GracefulShutdown` given;
/// then waits for every watched connection to finish the request it is on.
pub async fn accept(
    listener: TcpListener,
    cancel: CancellationToken,
    mut connection: impl FnMut(TcpStream, SocketAddr, &GracefulShutdown),
) {
    let graceful = GracefulShutdown::new();
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
        connection(stream, peer, &graceful);
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Runs a served connection to its end; how it ended is only worth a debug line.
pub async fn finish<E: std::fmt::Display>(connection: impl Future<Output = Result<(), E>>) {
    if let Err(error) = connection.await {
        tracing::debug!(%error, "connection ended with an error");
    }
}
