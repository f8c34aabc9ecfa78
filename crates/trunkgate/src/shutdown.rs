//! SIGTERM/SIGINT handling. The first signal asks the core for a graceful drain (new
//! INVITEs get 503, dialogs in progress finish or the grace period runs out); a second one
//! ends the process at once.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

/// Install the handlers (must run inside the runtime) and return the receiver that fires on
/// the first signal.
pub fn install() -> std::io::Result<oneshot::Receiver<()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(
            signal = name,
            "shutdown requested: draining (send it again to exit now)"
        );
        let _ = tx.send(());
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::warn!(signal = name, "second signal: exiting now");
        std::process::exit(1);
    });
    Ok(rx)
}
