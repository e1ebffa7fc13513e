//! Address leases: which sandbox holds which address of the node's subnet.
//!
//! [`LeaseTable`] is pure bookkeeping; the durable record is one file per sandbox
//! (`<sandbox-dir>/net/lease`, the address as text), written while the driver's lock is held
//! and scanned when the driver starts, so leases survive a restart of the control plane.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use hangar_core::SandboxId;
use ipnet::Ipv4Net;

use super::NetError;

/// The leases of one subnet. The gateway (first host address) is never leased; the
/// network and broadcast addresses are not hosts.
#[derive(Debug, Clone)]
pub struct LeaseTable {
    subnet: Ipv4Net,
    by_addr: BTreeMap<Ipv4Addr, SandboxId>,
    by_id: BTreeMap<SandboxId, Ipv4Addr>,
    /// Where the next search starts (next-fit: a freed address is not handed out again at
    /// once, so late packets for the old holder do not reach a new one).
    cursor: u32,
}

impl LeaseTable {
    /// An empty table for `subnet`.
    pub fn new(subnet: Ipv4Net) -> Self {
        Self {
            subnet,
            by_addr: BTreeMap::new(),
            by_id: BTreeMap::new(),
            cursor: 0,
        }
    }

    /// The subnet's gateway: its first host address (kept by the node's bridge).
    pub fn gateway(subnet: Ipv4Net) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(subnet.network()).saturating_add(1))
    }

    /// Records an existing lease (from a lease file). A lease outside the subnet, on the
    /// gateway, or on an address already held by another sandbox is refused with
    /// [`NetError::Lease`].
    pub fn restore(&mut self, id: SandboxId, addr: Ipv4Addr) -> Result<(), NetError> {
        if !self.is_leasable(addr) {
            return Err(NetError::Lease {
                id,
                reason: format!("{addr} is not a host address of {}", self.subnet),
            });
        }
        match self.by_addr.get(&addr) {
            Some(holder) if *holder != id => Err(NetError::Lease {
                id,
                reason: format!("{addr} is already leased to {holder}"),
            }),
            _ => {
                self.by_addr.insert(addr, id);
                self.by_id.insert(id, addr);
                Ok(())
            }
        }
    }

    /// `id`'s address: its existing lease, or the next free host address after the last one
    /// handed out. [`NetError::SubnetFull`] when every address is taken.
    pub fn allocate(&mut self, id: SandboxId) -> Result<Ipv4Addr, NetError> {
        if let Some(addr) = self.by_id.get(&id) {
            return Ok(*addr);
        }
        let first = u32::from(Self::gateway(self.subnet)).saturating_add(1);
        let last = u32::from(self.subnet.broadcast()).saturating_sub(1);
        if last < first {
            return Err(NetError::SubnetFull {
                subnet: self.subnet,
            });
        }
        let span = last - first + 1;
        for step in 0..span {
            let offset = (self.cursor.wrapping_add(step)) % span;
            let addr = Ipv4Addr::from(first + offset);
            if !self.by_addr.contains_key(&addr) {
                self.cursor = (offset + 1) % span;
                self.by_addr.insert(addr, id);
                self.by_id.insert(id, addr);
                return Ok(addr);
            }
        }
        Err(NetError::SubnetFull {
            subnet: self.subnet,
        })
    }

    /// Frees `id`'s lease, if it has one; returns the address it held.
    pub fn free(&mut self, id: SandboxId) -> Option<Ipv4Addr> {
        let addr = self.by_id.remove(&id)?;
        self.by_addr.remove(&addr);
        Some(addr)
    }

    /// `id`'s leased address, if any.
    pub fn get(&self, id: SandboxId) -> Option<Ipv4Addr> {
        self.by_id.get(&id).copied()
    }

    /// How many addresses are leased.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// No address is leased.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    fn is_leasable(&self, addr: Ipv4Addr) -> bool {
        self.subnet.contains(&addr)
            && addr != self.subnet.network()
            && addr != self.subnet.broadcast()
            && addr != Self::gateway(self.subnet)
    }
}

/// Parses a lease file's text (one IPv4 address, surrounding whitespace ignored).
pub fn parse_lease(text: &str) -> Option<Ipv4Addr> {
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> SandboxId {
        SandboxId::from_uuid(uuid::Uuid::from_u128(n))
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("subnet")
    }

    #[test]
    fn allocates_after_the_gateway_and_keeps_existing_leases() {
        let mut t = LeaseTable::new(net("10.89.0.0/16"));
        assert_eq!(
            LeaseTable::gateway(net("10.89.0.0/16")),
            Ipv4Addr::new(10, 89, 0, 1)
        );
        let a = t.allocate(id(1)).expect("a");
        assert_eq!(a, Ipv4Addr::new(10, 89, 0, 2));
        assert_eq!(
            t.allocate(id(1)).expect("again"),
            a,
            "same sandbox, same lease"
        );
        let b = t.allocate(id(2)).expect("b");
        assert_eq!(b, Ipv4Addr::new(10, 89, 0, 3));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn freed_addresses_come_back_only_after_the_rest() {
        // /29: network .0, gateway .1, hosts .2-.6, broadcast .7.
        let mut t = LeaseTable::new(net("192.168.7.0/29"));
        let all: Vec<Ipv4Addr> = (1..=5).map(|n| t.allocate(id(n)).expect("lease")).collect();
        assert_eq!(all.first(), Some(&Ipv4Addr::new(192, 168, 7, 2)));
        assert_eq!(all.last(), Some(&Ipv4Addr::new(192, 168, 7, 6)));
        assert!(matches!(
            t.allocate(id(9)),
            Err(NetError::SubnetFull { .. })
        ));
        assert_eq!(t.free(id(2)), Some(Ipv4Addr::new(192, 168, 7, 3)));
        assert_eq!(t.free(id(2)), None);
        assert_eq!(
            t.allocate(id(9)).expect("reuse"),
            Ipv4Addr::new(192, 168, 7, 3)
        );
        // Every address unique.
        let mut seen: Vec<Ipv4Addr> = (1..=5).filter_map(|n| t.get(id(n))).collect();
        seen.push(Ipv4Addr::new(192, 168, 7, 3));
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 5);
    }

    #[test]
    fn next_fit_does_not_reuse_at_once() {
        let mut t = LeaseTable::new(net("10.0.0.0/24"));
        let a = t.allocate(id(1)).expect("a");
        t.free(id(1));
        let b = t.allocate(id(2)).expect("b");
        assert_ne!(a, b);
    }

    #[test]
    fn restore_refuses_conflicts_and_foreign_addresses() {
        let mut t = LeaseTable::new(net("10.89.0.0/16"));
        t.restore(id(1), Ipv4Addr::new(10, 89, 0, 9))
            .expect("restore");
        t.restore(id(1), Ipv4Addr::new(10, 89, 0, 9))
            .expect("idempotent");
        assert!(t.restore(id(2), Ipv4Addr::new(10, 89, 0, 9)).is_err());
        assert!(
            t.restore(id(3), Ipv4Addr::new(10, 89, 0, 1)).is_err(),
            "gateway"
        );
        assert!(
            t.restore(id(4), Ipv4Addr::new(10, 90, 0, 5)).is_err(),
            "outside"
        );
        assert!(
            t.restore(id(5), Ipv4Addr::new(10, 89, 255, 255)).is_err(),
            "broadcast"
        );
        // Restored leases are skipped by allocation.
        for n in 10..20 {
            assert_ne!(
                t.allocate(id(n)).expect("lease"),
                Ipv4Addr::new(10, 89, 0, 9)
            );
        }
    }

    #[test]
    fn lease_file_text() {
        assert_eq!(
            parse_lease("10.89.0.7\n"),
            Some(Ipv4Addr::new(10, 89, 0, 7))
        );
        assert_eq!(parse_lease("garbage"), None);
        assert_eq!(parse_lease(""), None);
    }
}
