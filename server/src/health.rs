//! `GET /healthz`: the process answers. `GET /readyz`: it should get traffic —
//! not shutting down and, in a cluster, connected to its Redis. Small JSON
//! bodies, outside the Origin check (load balancers and orchestrators call
//! them, not pages), computed from a few atomics. `GET /metrics` (when turned
//! on): the Prometheus metrics of [`crate::metrics`].

use std::sync::Arc;

use serde_json::json;
use tokio_util::sync::CancellationToken;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::socketio::Io;
use crate::transport::SessionRegistry;

pub(crate) fn routes(
    registry: Arc<SessionRegistry<Io>>,
    shutdown: CancellationToken,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::json(&json!({"status": "alive"})).into_response());
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(warp::any().map(move || (registry.clone(), shutdown.clone())))
        .map(
            |(registry, shutdown): (Arc<SessionRegistry<Io>>, CancellationToken)| {
                readiness(registry.factory(), shutdown.is_cancelled())
            },
        );
    healthz.or(readyz).unify()
}

/// `GET /metrics`, when `enabled` (else it does not match).
pub(crate) fn metrics_route(
    registry: Arc<SessionRegistry<Io>>,
    enabled: bool,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("metrics").and(warp::get()).and_then(move || {
        let registry = registry.clone();
        async move {
            if enabled {
                Ok(metrics_reply(registry.factory()))
            } else {
                Err(warp::reject::not_found())
            }
        }
    })
}

/// The metrics' text, the cluster's state read now.
pub(crate) fn metrics_reply(io: &Io) -> Response {
    let metrics = crate::metrics::metrics();
    if let Some(cluster) = io.cluster() {
        let status = cluster.status();
        metrics.cluster_connected.set(i64::from(status.connected));
        metrics
            .cluster_dropped
            .set(i64::try_from(status.dropped).unwrap_or(i64::MAX));
        metrics
            .cluster_lost
            .set(i64::try_from(status.lost).unwrap_or(i64::MAX));
    }
    warp::reply::with_header(
        metrics.render(),
        "content-type",
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
    )
    .into_response()
}

fn readiness(io: &Io, shutting_down: bool) -> Response {
    let mut ready = !shutting_down;
    let mut body = json!({"shuttingDown": shutting_down});
    match io.cluster() {
        Some(cluster) => {
            let status = cluster.status();
            ready &= status.connected;
            body["redis"] = json!(if status.connected {
                "connected"
            } else {
                "unreachable"
            });
            body["clusterDropped"] = json!(status.dropped);
            body["clusterLost"] = json!(status.lost);
        }
        None => body["redis"] = json!("not configured"),
    }
    body["status"] = json!(if ready { "ready" } else { "not ready" });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    warp::reply::with_status(warp::reply::json(&body), code).into_response()
}
