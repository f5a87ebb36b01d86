//! `loop restate serve`: the endpoint the Restate server calls to run loop's services, and its
//! registration.
//!
//! The accept loop is ours, not the SDK's `HttpServer`: it sets `TCP_NODELAY` on every
//! connection (measured: ~44 ms per workflow step with Nagle's algorithm on, ~2 ms off).
//! Registration is idempotent (`force`): serving a new build of loop at the same address
//! re-registers it, which is how an upgrade reaches the server.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use restate_sdk::endpoint::Endpoint;
use restate_sdk::hyper::HyperEndpoint;

use super::client::Ingress;
use super::services::{LoopIssue, LoopJobs, LoopLog, LoopRun};
use super::RestateError;

/// The endpoint with every loop service bound. With identity keys (`publickeyv1_…`, the public
/// halves of the keys the server signs with), it serves only requests signed by one of them.
pub fn endpoint(identity_keys: &[String]) -> Result<Endpoint, RestateError> {
    let mut builder = Endpoint::builder().bind(LoopRun).bind(LoopIssue).bind(LoopJobs).bind(LoopLog);
    for key in identity_keys {
        builder = builder
            .identity_key(key)
            .map_err(|e| RestateError::Refused(format!("--identity-key {key:?}: not a Restate public key ({e})")))?;
    }
    Ok(builder.build())
}

/// Serves until `stop` resolves; registers with `admin` (when given) as `advertise` once the
/// listener is bound, then calls `ready` with the address it serves on.
pub fn serve(
    listen: SocketAddr,
    admin: Option<String>,
    advertise: Option<String>,
    identity_keys: &[String],
    ready: impl FnOnce(&str),
) -> Result<(), RestateError> {
    let endpoint = endpoint(identity_keys)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| RestateError::Io(format!("starting the endpoint's runtime: {e}")))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| RestateError::Io(format!("listening on {listen}: {e}")))?;
        let bound = listener.local_addr().map_err(|e| RestateError::Io(e.to_string()))?;
        let uri = advertise.unwrap_or_else(|| format!("http://{bound}"));
        if let Some(admin) = admin {
            // The server calls the endpoint back while it registers it: keep accepting meanwhile.
            let service = HyperEndpoint::new(endpoint.clone());
            let accept = tokio::spawn(accept_loop(listener, service));
            let (admin2, uri2) = (admin.clone(), uri.clone());
            tokio::task::spawn_blocking(move || register_with_retry(&admin2, &uri2))
                .await
                .map_err(|e| RestateError::Io(e.to_string()))??;
            ready(&uri);
            wait_for_signal().await;
            accept.abort();
        } else {
            let service = HyperEndpoint::new(endpoint.clone());
            let accept = tokio::spawn(accept_loop(listener, service));
            ready(&uri);
            wait_for_signal().await;
            accept.abort();
        }
        Ok(())
    })
}

/// Registration right after the server started can meet an admin API that is not up yet.
fn register_with_retry(admin: &str, uri: &str) -> Result<(), RestateError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match Ingress::register(admin, uri) {
            Ok(()) => return Ok(()),
            Err(e @ RestateError::Http { .. }) if std::time::Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e),
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, service: HyperEndpoint) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        // Without it every small frame waits for the peer's delayed ACK.
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        tokio::spawn(async move {
            let _ = http2::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_malformed_identity_key_is_refused_by_name() {
        let err = super::endpoint(&["not-a-key".into()]).err().expect("refused");
        assert!(err.to_string().contains("--identity-key \"not-a-key\""), "{err}");
        assert!(super::endpoint(&[]).is_ok());
    }
}
