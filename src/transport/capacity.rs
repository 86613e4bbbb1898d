//! How many subscriber connections are open, and the caps that refuse more
//! before any resources are spent on them: per node, and per client address.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use metrics::Gauge;
use tokio::sync::Notify;

use crate::limits::{IpSlot, PerIp};

/// The subscriber transports, for the per-transport connection gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    WebSocket = 0,
    Quic = 1,
    /// QUIC from browsers: WebTransport sessions over HTTP/3.
    WebTransport = 2,
    /// Server-Sent Events streams.
    Sse = 3,
    /// Pusher Channels clients' WebSockets.
    Pusher = 4,
}

#[derive(Debug)]
pub struct Connections {
    open: AtomicUsize,
    max: usize,
    idle: Notify,
    /// `bullhorn_connections{transport}`, indexed by [`Transport`].
    gauges: [Gauge; 5],
    per_ip: Arc<PerIp>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The node holds its maximum.
    OverCapacity,
    /// The client's address holds its maximum.
    PerIp,
}

/// Held by each open connection; dropping it frees the slots.
#[derive(Debug)]
pub struct ConnectionPermit {
    connections: Arc<Connections>,
    transport: Transport,
    _address: IpSlot,
}

impl Connections {
    /// `gauges`: the WebSocket, QUIC, WebTransport, SSE and Pusher connection gauges; `per_ip`: 0 for no per-address limit.
    pub fn new(max: usize, per_ip: u32, gauges: [Gauge; 5]) -> Arc<Connections> {
        Arc::new(Connections {
            open: AtomicUsize::new(0),
            max,
            idle: Notify::new(),
            gauges,
            per_ip: PerIp::new(per_ip),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Slots not taken: how many more connections the node may hold now.
    pub fn free(&self) -> usize {
        self.max.saturating_sub(self.open())
    }

    pub fn is_full(&self) -> bool {
        self.free() == 0
    }

    /// Takes a slot for a connection from `peer`, or says which cap refused it.
    pub fn try_acquire(self: &Arc<Self>, transport: Transport, peer: IpAddr) -> Result<ConnectionPermit, Refusal> {
        let address = self.per_ip.try_acquire(peer).ok_or(Refusal::PerIp)?;
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1))
            .map_err(|_| Refusal::OverCapacity)?;
        self.gauges[transport as usize].increment(1.0);
        Ok(ConnectionPermit { connections: self.clone(), transport, _address: address })
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
        let c = Connections::new(
            2,
            0,
            [
                metrics::gauge!("test_ws"),
                metrics::gauge!("test_quic"),
                metrics::gauge!("test_wt"),
                metrics::gauge!("test_sse"),
                metrics::gauge!("test_pusher"),
            ],
        );
        let ip = IpAddr::from([127, 0, 0, 1]);
        let a = c.try_acquire(Transport::WebSocket, ip).unwrap();
        let b = c.try_acquire(Transport::Quic, ip).unwrap();
        assert_eq!(c.try_acquire(Transport::WebSocket, ip).unwrap_err(), Refusal::OverCapacity);
        drop(a);
        let waiter = tokio::spawn({
            let c = c.clone();
            async move { c.wait_idle().await }
        });
        drop(b);
        waiter.await.unwrap();
        assert_eq!(c.open(), 0);
    }

    #[test]
    fn an_address_at_its_limit_is_refused_without_taking_a_node_slot() {
        let c = Connections::new(
            10,
            1,
            [
                metrics::gauge!("test_ws"),
                metrics::gauge!("test_quic"),
                metrics::gauge!("test_wt"),
                metrics::gauge!("test_sse"),
                metrics::gauge!("test_pusher"),
            ],
        );
        let ip = IpAddr::from([10, 0, 0, 1]);
        let _held = c.try_acquire(Transport::WebSocket, ip).unwrap();
        assert_eq!(c.try_acquire(Transport::WebSocket, ip).unwrap_err(), Refusal::PerIp);
        assert_eq!(c.open(), 1);
    }
}
