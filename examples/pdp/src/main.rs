//! The PDP stand-in: `PDP_BIND` (default `127.0.0.1:50051`) serves gRPC and `/metrics`;
//! `PDP_STEP` (milliseconds, default 200) spaces the lifecycle statuses. Stops on
//! Ctrl-C or SIGTERM.

use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let bind = std::env::var("PDP_BIND").unwrap_or_else(|_| "127.0.0.1:50051".to_owned());
    let step = match std::env::var("PDP_STEP") {
        Ok(ms) => Duration::from_millis(
            ms.parse()
                .map_err(|_| format!("PDP_STEP={ms}: milliseconds"))?,
        ),
        Err(_) => Duration::from_millis(200),
    };
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .map_err(|error| format!("cannot listen on {bind}: {error}"))?;
    println!("pdp listening on {}", listener.local_addr()?);
    let metrics = pdp::metrics();
    pdp::serve(listener, metrics, pdp::PdpService::new(step), shutdown()).await
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
