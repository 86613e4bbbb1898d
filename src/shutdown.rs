//! Drain: the server's way out, spread over time.
//!
//! Readiness flips first (`/readyz` answers 503 so a load balancer stops
//! sending), the viewer listener stops accepting, and every subscriber gets
//! `closing`/`server_draining` with a `reconnect_after_ms` drawn uniformly from
//! the drain window, so a node's viewers come back spread out, not at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::Rng as _;
use tokio::sync::watch;

/// The drain state shared by listeners, connections and health checks.
#[derive(Debug)]
pub struct Drain {
    draining: AtomicBool,
    signal: watch::Sender<bool>,
    window: Duration,
}

impl Drain {
    pub fn new(window: Duration) -> Drain {
        Drain { draining: AtomicBool::new(false), signal: watch::Sender::new(false), window }
    }

    /// Starts draining; returns false if it had already started.
    pub fn begin(&self) -> bool {
        let first = !self.draining.swap(true, Ordering::SeqCst);
        if first {
            self.signal.send_replace(true);
        }
        first
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Resolves once draining has begun.
    pub async fn started(&self) {
        let mut rx = self.signal.subscribe();
        let _ = rx.wait_for(|draining| *draining).await;
    }

    /// A reconnect delay drawn uniformly from the drain window.
    pub fn reconnect_after_ms(&self) -> u64 {
        draw_within(self.window)
    }

    /// Draws reconnect delays as [`Drain::reconnect_after_ms`] does, apart
    /// from the drain (for closes carried through the lanes).
    pub fn reconnect_delays(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let window = self.window;
        move || draw_within(window)
    }
}

/// A delay in ms drawn uniformly from `window`.
pub fn draw_within(window: Duration) -> u64 {
    let window = window.as_millis() as u64;
    if window == 0 { 0 } else { rand::rng().random_range(0..=window) }
}

impl Drain {}

/// Installs the SIGINT and SIGTERM handlers now (so a signal that arrives
/// as soon as the listeners are announced is already ours, not the default
/// that kills the process) and returns a future that resolves on either.
#[cfg(unix)]
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn begin_once_and_wake_waiters() {
        let drain = std::sync::Arc::new(Drain::new(Duration::from_secs(10)));
        let waiter = tokio::spawn({
            let drain = drain.clone();
            async move { drain.started().await }
        });
        assert!(drain.begin());
        assert!(!drain.begin());
        waiter.await.unwrap();
        assert!(drain.is_draining());
    }

    #[test]
    fn delays_cover_the_window() {
        let drain = Drain::new(Duration::from_millis(1000));
        let delays: Vec<u64> = (0..2000).map(|_| drain.reconnect_after_ms()).collect();
        assert!(delays.iter().all(|d| *d <= 1000));
        assert!(delays.iter().any(|d| *d < 100) && delays.iter().any(|d| *d > 900));
    }
}
