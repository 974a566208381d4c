//! Fixed-capacity tables: connection slots addressed by generation-checked handles, and the
//! routing table from an online account to its bound resources.
//!
//! Both are `heapless` so their size is known at compile time (STYLE.md, "Bounded memory");
//! "full" is a typed error that the caller turns into `<resource-constraint/>`.

use heapless::index_map::FnvIndexMap;

use crate::limits::{CAP_CONNECTIONS, CAP_ONLINE_ACCOUNTS, CAP_RESOURCES_PER_ACCOUNT};

/// A handle to a connection slot. The generation makes a handle to a closed connection
/// useless once its slot is reused, so a late event can never reach a newer connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    idx: u16,
    generation: u16,
}

impl ConnId {
    /// The slot index, for shell-side arrays kept in step with the table.
    pub fn index(self) -> usize {
        self.idx as usize
    }
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "c{}.{}", self.idx, self.generation)
    }
}

/// The table is at its configured or compiled capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

struct Slot<T> {
    generation: u16,
    value: Option<T>,
}

/// Slots for at most `N` values (and at most `limit`, which config may set lower).
pub struct SlotTable<T, const N: usize> {
    slots: heapless::Vec<Slot<T>, N>,
    free: heapless::Vec<u16, N>,
    len: usize,
    limit: usize,
}

impl<T, const N: usize> SlotTable<T, N> {
    pub fn new(limit: usize) -> Self {
        SlotTable {
            slots: heapless::Vec::new(),
            free: heapless::Vec::new(),
            len: 0,
            limit: limit.min(N),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Inserts the value built from its handle.
    pub fn insert_with(&mut self, make: impl FnOnce(ConnId) -> T) -> Result<ConnId, Full> {
        if self.len >= self.limit {
            return Err(Full);
        }
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                let i = u16::try_from(self.slots.len()).map_err(|_| Full)?;
                self.slots
                    .push(Slot {
                        generation: 0,
                        value: None,
                    })
                    .map_err(|_| Full)?;
                i
            }
        };
        let slot = self.slots.get_mut(idx as usize).ok_or(Full)?;
        let id = ConnId {
            idx,
            generation: slot.generation,
        };
        slot.value = Some(make(id));
        self.len += 1;
        Ok(id)
    }

    pub fn get(&self, id: ConnId) -> Option<&T> {
        let slot = self.slots.get(id.idx as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.value.as_ref()
    }

    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut T> {
        let slot = self.slots.get_mut(id.idx as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.value.as_mut()
    }

    pub fn remove(&mut self, id: ConnId) -> Option<T> {
        let slot = self.slots.get_mut(id.idx as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.len -= 1;
        // Cannot fail: at most N indices exist and each is freed once per occupation.
        let _ = self.free.push(id.idx);
        Some(value)
    }

    pub fn ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.value.as_ref().map(|_| ConnId {
                idx: i as u16,
                generation: s.generation,
            })
        })
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (ConnId, &mut T)> {
        self.slots.iter_mut().enumerate().filter_map(|(i, s)| {
            let generation = s.generation;
            s.value.as_mut().map(|v| {
                (
                    ConnId {
                        idx: i as u16,
                        generation,
                    },
                    v,
                )
            })
        })
    }
}

/// Stable small number for an account, assigned when the account is loaded or created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(pub u32);

pub type Resources = heapless::Vec<ConnId, CAP_RESOURCES_PER_ACCOUNT>;

/// Why a resource could not be added to the routing table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindError {
    /// The account already has its maximum number of resources.
    TooManyResources,
    /// The table of online accounts is full.
    TableFull,
}

/// Online accounts and their bound connections, in bind order.
pub struct OnlineTable {
    map: FnvIndexMap<AccountId, Resources, CAP_ONLINE_ACCOUNTS>,
    max_resources: usize,
}

impl OnlineTable {
    pub fn new(max_resources: usize) -> Self {
        OnlineTable {
            map: FnvIndexMap::new(),
            max_resources: max_resources.min(CAP_RESOURCES_PER_ACCOUNT),
        }
    }

    pub fn resources(&self, account: AccountId) -> &[ConnId] {
        self.map.get(&account).map(|r| r.as_slice()).unwrap_or(&[])
    }

    pub fn add(&mut self, account: AccountId, conn: ConnId) -> Result<(), BindError> {
        if let Some(list) = self.map.get_mut(&account) {
            if list.len() >= self.max_resources {
                return Err(BindError::TooManyResources);
            }
            return list.push(conn).map_err(|_| BindError::TooManyResources);
        }
        let mut list = Resources::new();
        // A fresh list has room for one entry: CAP_RESOURCES_PER_ACCOUNT >= 1.
        let _ = list.push(conn);
        self.map
            .insert(account, list)
            .map(|_| ())
            .map_err(|_| BindError::TableFull)
    }

    pub fn remove(&mut self, account: AccountId, conn: ConnId) {
        let now_empty = match self.map.get_mut(&account) {
            Some(list) => {
                list.retain(|c| *c != conn);
                list.is_empty()
            }
            None => false,
        };
        if now_empty {
            self.map.remove(&account);
        }
    }

    /// A session moved to another connection (XEP-0198 resumption): same place in the
    /// bind order.
    pub fn replace(&mut self, account: AccountId, old: ConnId, new: ConnId) {
        if let Some(list) = self.map.get_mut(&account) {
            for c in list.iter_mut() {
                if *c == old {
                    *c = new;
                }
            }
        }
    }

    pub fn online_accounts(&self) -> usize {
        self.map.len()
    }
}

/// Compile-time check that the connection table can be indexed by `u16`.
const _: () = assert!(CAP_CONNECTIONS <= u16::MAX as usize);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_handles_do_not_reach_a_reused_slot() {
        let mut t: SlotTable<&str, 4> = SlotTable::new(4);
        let a = t.insert_with(|_| "a").unwrap();
        assert_eq!(t.remove(a), Some("a"));
        let b = t.insert_with(|_| "b").unwrap();
        assert_eq!(a.index(), b.index());
        assert_eq!(t.get(a), None);
        assert_eq!(t.get(b), Some(&"b"));
        assert_eq!(t.remove(a), None);
    }

    #[test]
    fn configured_limit_is_enforced_below_capacity() {
        let mut t: SlotTable<u8, 8> = SlotTable::new(2);
        assert!(t.insert_with(|_| 1).is_ok());
        assert!(t.insert_with(|_| 2).is_ok());
        assert_eq!(t.insert_with(|_| 3), Err(Full));
        assert_eq!(t.len(), 2);
        assert_eq!(t.ids().count(), 2);
    }

    #[test]
    fn online_table_bounds_resources_per_account() {
        let mut conns: SlotTable<(), 16> = SlotTable::new(16);
        let ids: Vec<ConnId> = (0..3).map(|_| conns.insert_with(|_| ()).unwrap()).collect();
        let mut online = OnlineTable::new(2);
        let acct = AccountId(7);
        assert_eq!(online.add(acct, ids[0]), Ok(()));
        assert_eq!(online.add(acct, ids[1]), Ok(()));
        assert_eq!(online.add(acct, ids[2]), Err(BindError::TooManyResources));
        online.remove(acct, ids[0]);
        assert_eq!(online.resources(acct), &[ids[1]]);
        online.remove(acct, ids[1]);
        assert_eq!(online.online_accounts(), 0);
    }

    #[test]
    fn handle_is_small() {
        assert_eq!(std::mem::size_of::<ConnId>(), 4);
    }
}
