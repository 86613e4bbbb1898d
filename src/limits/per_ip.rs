//! Connections per client address, so one host cannot take a node's whole
//! capacity. IPv6 clients are counted per /64: a host rotates freely inside
//! its prefix (privacy addresses), so a per-address count would not hold it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub struct PerIp {
    /// 0: no limit.
    max: u32,
    counts: Mutex<HashMap<IpAddr, u32>>,
}

/// One connection's share of its address's count; dropping it gives it back.
#[derive(Debug)]
pub struct IpSlot {
    limits: Arc<PerIp>,
    key: IpAddr,
}

/// The address a connection is counted under.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

impl PerIp {
    pub fn new(max: u32) -> Arc<PerIp> {
        Arc::new(PerIp { max, counts: Mutex::default() })
    }

    /// A slot for one more connection from `ip`, or `None` at the limit.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        if self.max == 0 {
            return Some(IpSlot { limits: self.clone(), key: ip });
        }
        let key = key(ip);
        let mut counts = self.counts.lock().expect("per-ip lock");
        let count = counts.entry(key).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpSlot { limits: self.clone(), key })
    }

    /// Connections counted for `ip` now.
    pub fn count(&self, ip: IpAddr) -> u32 {
        self.counts.lock().expect("per-ip lock").get(&key(ip)).copied().unwrap_or(0)
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if self.limits.max == 0 {
            return;
        }
        let mut counts = self.limits.counts.lock().expect("per-ip lock");
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_each_address_and_gives_slots_back() {
        let limits = PerIp::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let (s1, _s2) = (limits.try_acquire(a).unwrap(), limits.try_acquire(a).unwrap());
        assert!(limits.try_acquire(a).is_none());
        assert!(limits.try_acquire(b).is_some(), "another address is not affected");
        drop(s1);
        assert!(limits.try_acquire(a).is_some());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let limits = PerIp::new(1);
        let _one = limits.try_acquire("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(limits.try_acquire("2001:db8:1:2:ffff::9".parse().unwrap()).is_none(), "same /64");
        assert!(limits.try_acquire("2001:db8:1:3::1".parse().unwrap()).is_some(), "another /64");
        let _v4 = limits.try_acquire("192.0.2.7".parse().unwrap()).unwrap();
        assert!(limits.try_acquire("::ffff:192.0.2.7".parse().unwrap()).is_none());
    }

    #[test]
    fn the_map_holds_only_addresses_with_connections() {
        let limits = PerIp::new(3);
        let slots: Vec<_> = (0..50).map(|i| limits.try_acquire(IpAddr::from([10, 0, 0, i])).unwrap()).collect();
        drop(slots);
        assert!(limits.counts.lock().unwrap().is_empty());
    }
}
