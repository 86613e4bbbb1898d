//! How many subscriber connections are open, and the cap that refuses more
//! before any resources are spent on them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use metrics::Gauge;
use tokio::sync::Notify;

/// The subscriber transports, for the per-transport connection gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    WebSocket = 0,
    Quic = 1,
}

#[derive(Debug)]
pub struct Connections {
    open: AtomicUsize,
    max: usize,
    idle: Notify,
    /// `bullhorn_connections{transport}`, indexed by [`Transport`].
    gauges: [Gauge; 2],
}

/// Held by each open connection; dropping it frees the slot. Two words: it is
/// part of every connection's state.
#[derive(Debug)]
pub struct ConnectionPermit {
    connections: Arc<Connections>,
    transport: Transport,
}

impl Connections {
    /// `gauges`: the WebSocket and the QUIC connection gauges.
    pub fn new(max: usize, gauges: [Gauge; 2]) -> Arc<Connections> {
        Arc::new(Connections { open: AtomicUsize::new(0), max, idle: Notify::new(), gauges })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Takes a slot, or `None` at the cap.
    pub fn try_acquire(self: &Arc<Self>, transport: Transport) -> Option<ConnectionPermit> {
        self.open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1)).ok()?;
        self.gauges[transport as usize].increment(1.0);
        Some(ConnectionPermit { connections: self.clone(), transport })
    }

    /// Resolves when no connection is open.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.connections.gauges[self.transport as usize].decrement(1.0);
        if self.connections.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.connections.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn caps_and_reports_idle() {
        let c = Connections::new(2, [metrics::gauge!("test_ws"), metrics::gauge!("test_quic")]);
        let a = c.try_acquire(Transport::WebSocket).unwrap();
        let b = c.try_acquire(Transport::Quic).unwrap();
        assert!(c.try_acquire(Transport::WebSocket).is_none());
        drop(a);
        let waiter = tokio::spawn({
            let c = c.clone();
            async move { c.wait_idle().await }
        });
        drop(b);
        waiter.await.unwrap();
        assert_eq!(c.open(), 0);
    }
}
