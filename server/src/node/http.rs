//! The operator's HTTP listener (`--metrics-listen`): `/metrics` (Prometheus, OpenMetrics
//! text), `/healthz` (the process and its Redis answer) and `/readyz` (see
//! [`crate::metrics::readiness`]). Plain HTTP/1.1, GET only, no request body read; it serves
//! nothing of the directory.

use crate::error::{Error, Result};
use crate::metrics::{readiness, Snapshot};
use crate::node::shared::Shared;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// Connections served at once; more wait in the kernel's backlog.
const HTTP_CONNECTIONS_MAX: usize = 64;
/// Time for a request's header to arrive.
const HTTP_HEADER_TIMEOUT_MS: u64 = 5_000;

/// Binds `addr` and serves until `stopped` turns true; returns the bound address.
pub async fn start(
    addr: SocketAddr,
    shared: Arc<Shared>,
    stopped: watch::Receiver<bool>,
) -> Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(format!("failed to bind --metrics-listen {addr}"), e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::io("failed to read the metrics address", e))?;
    tokio::spawn(serve(listener, shared, stopped));
    Ok(bound)
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(HTTP_CONNECTIONS_MAX));
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("never closed"),
            _ = stopped.changed() => return,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => return,
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |request| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(answer(&shared, &request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_millis(HTTP_HEADER_TIMEOUT_MS))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer<B>(shared: &Shared, request: &Request<B>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    match request.uri().path() {
        "/metrics" => {
            let body = shared.metrics.render(&snapshot(shared).await);
            let mut response = text(StatusCode::OK, body);
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        "/healthz" => {
            if shared.store_answers() {
                text(StatusCode::OK, "ok\n".into())
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ok: its Redis does not answer\n".into(),
                )
            }
        }
        "/readyz" => match readiness(&snapshot(shared).await) {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: /metrics, /healthz, /readyz\n".into(),
        ),
    }
}

/// The node's state now.
async fn snapshot(shared: &Shared) -> Snapshot {
    let state = shared.membership.state();
    let redis_up = shared.store_answers();
    let accounts = if redis_up {
        shared.store.count().await.ok()
    } else {
        None
    };
    let rejected = shared.rejections.counts();
    Snapshot {
        view: state.view,
        applied: shared.applied(),
        decided: shared.decided(),
        accounts,
        redis_up,
        syncing: shared.syncing(),
        rejected: [rejected.datagrams, rejected.connections, rejected.requests],
        ignored_datagrams: state.ignored_datagrams,
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
