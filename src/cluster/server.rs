//! Serving a node's cluster port: one tonic server for the node-to-node
//! [`ClusterService`] and the operator's [`AdminService`], fed by the
//! transport's listener.

use std::time::Duration;

use tokio::sync::watch;
use tonic::codegen::http;

use super::admin::AdminService;
use super::identity::{CLUSTER_ID_HEADER, ClusterId};
use super::pb;
use super::service::ClusterService;
use super::transport::{Listener, ServerIo};
use super::types::NodeId;

/// Serves `cluster` and `admin` on `listener` until `stop` turns true.
/// Accept errors (out of file descriptors, a reset before accept) are
/// logged and retried after `pause`, so they never end the server. Every
/// answer carries the cluster id `cluster_id` holds at the time, so that a
/// caller can refuse answers from another cluster.
pub(crate) async fn serve(
    node_id: NodeId,
    cluster_id: watch::Receiver<Option<ClusterId>>,
    listener: Box<dyn Listener>,
    cluster: ClusterService,
    admin: AdminService,
    pause: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let incoming = futures_util::stream::unfold(listener, move |mut listener| async move {
        loop {
            match listener.accept_peer().await {
                Ok((io, peer)) => {
                    return Some((Ok::<_, std::io::Error>(ServerIo(io, peer)), listener));
                }
                Err(e) => {
                    tracing::warn!(node_id, cause = %e, "accept failed");
                    tokio::time::sleep(pause).await;
                }
            }
        }
    });
    let signal = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    let stamp = move |mut response: http::Response<tonic::body::Body>| {
        if let Some(id) = *cluster_id.borrow()
            && let Ok(value) = http::HeaderValue::from_str(&id.to_string())
        {
            response.headers_mut().insert(CLUSTER_ID_HEADER, value);
        }
        response
    };
    let result = tonic::transport::Server::builder()
        .layer(tower::util::MapResponseLayer::new(stamp))
        .add_service(pb::cluster_server::ClusterServer::new(cluster))
        .add_service(pb::admin_server::AdminServer::new(admin))
        .serve_with_incoming_shutdown(incoming, signal)
        .await;
    if let Err(e) = result {
        tracing::error!(node_id, cause = %e, "cluster server stopped");
    }
}
