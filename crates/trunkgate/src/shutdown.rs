//! Signals. SIGTERM/SIGINT: The first signal asks the core for a graceful drain (new
//! INVITEs get 503, dialogs in progress finish or the grace period runs out); a second one
//! ends the process at once. SIGHUP reloads the policy ([`reload_on_sighup`]).

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

/// SIGHUP reloads the policy (as `trunkgate ctl reload`): one log line per reload.
pub fn reload_on_sighup(live: std::sync::Arc<crate::live::LivePolicy>) -> std::io::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let live = live.clone();
            // Reading and building the policy may resolve names: off the runtime's workers.
            let _ = tokio::task::spawn_blocking(move || live.reload(false, "SIGHUP")).await;
        }
    });
    Ok(())
}
