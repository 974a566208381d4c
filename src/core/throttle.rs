//! Failed-login throttling per IP address and per account.
//!
//! Each address and each claimed account name has a failure count over a window. Past a
//! small free allowance, the answer to every login attempt from that address or for that
//! account (success too, so timing does not reveal a right guess) is delayed, doubling
//! with each further failure up to a ceiling. A brute-force run slows to one guess per
//! `AUTH_MAX_DELAY_MS` per connection, while a user who mistypes twice notices nothing.
//! The table is small and evicts its oldest entry, so a flood of addresses cannot grow it.

use core::net::IpAddr;

use crate::limits::{
    AUTH_FAILURE_WINDOW_SECS, AUTH_FREE_FAILURES, AUTH_MAX_DELAY_MS, CAP_THROTTLE_ENTRIES,
};
use crate::time::Millis;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    Ip(IpAddr),
    /// The normalised account name a client claimed (existing or not).
    Account(String),
}

struct Entry {
    key: Key,
    failures: u32,
    window_start: Millis,
    /// Whether crossing the allowance was logged in this window (once per window, not
    /// once per attempt).
    logged: bool,
}

#[derive(Default)]
pub struct AuthThrottle {
    entries: Vec<Entry>,
}

const WINDOW_MS: u64 = AUTH_FAILURE_WINDOW_SECS * 1000;

fn delay_for(failures: u32) -> u64 {
    if failures < AUTH_FREE_FAILURES {
        return 0;
    }
    let doublings = (failures - AUTH_FREE_FAILURES).min(16);
    (1000u64 << doublings).min(AUTH_MAX_DELAY_MS)
}

impl AuthThrottle {
    fn live(&self, key: &Key, now: Millis) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| &e.key == key && now.saturating_sub(e.window_start) < WINDOW_MS)
    }

    /// How long the answer to a login attempt must wait.
    pub fn delay_ms(&self, ip: IpAddr, account: Option<&str>, now: Millis) -> u64 {
        let by_ip = self
            .live(&Key::Ip(ip), now)
            .map_or(0, |e| delay_for(e.failures));
        let by_account = account
            .and_then(|a| self.live(&Key::Account(a.to_string()), now))
            .map_or(0, |e| delay_for(e.failures));
        by_ip.max(by_account)
    }

    /// Counts a failure; returns the keys that just crossed the free allowance (to be
    /// logged once per window).
    pub fn failed(&mut self, ip: IpAddr, account: Option<&str>, now: Millis) -> Vec<Key> {
        let mut crossed = Vec::new();
        let keys = std::iter::once(Key::Ip(ip)).chain(account.map(|a| Key::Account(a.to_string())));
        for key in keys {
            let e = self.entry(key, now);
            e.failures = e.failures.saturating_add(1);
            if e.failures >= AUTH_FREE_FAILURES && !e.logged {
                e.logged = true;
                crossed.push(e.key.clone());
            }
        }
        crossed
    }

    /// A successful login clears its account's count (not the address's: one valid
    /// account must not reset an attacker's budget for guessing others).
    pub fn succeeded(&mut self, account: &str) {
        self.entries
            .retain(|e| e.key != Key::Account(account.to_string()));
    }

    fn entry(&mut self, key: Key, now: Millis) -> &mut Entry {
        let pos = match self.entries.iter().position(|e| e.key == key) {
            Some(i) => {
                if now.saturating_sub(self.entries[i].window_start) >= WINDOW_MS {
                    self.entries[i] = Entry {
                        key,
                        failures: 0,
                        window_start: now,
                        logged: false,
                    };
                }
                i
            }
            None => {
                if self.entries.len() >= CAP_THROTTLE_ENTRIES {
                    // Evict the oldest window: it is the closest to expiring anyway.
                    if let Some(oldest) =
                        (0..self.entries.len()).min_by_key(|i| self.entries[*i].window_start)
                    {
                        self.entries.swap_remove(oldest);
                    }
                }
                self.entries.push(Entry {
                    key,
                    failures: 0,
                    window_start: now,
                    logged: false,
                });
                self.entries.len() - 1
            }
        };
        &mut self.entries[pos]
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(core::net::Ipv4Addr::new(192, 168, 1, 9));

    #[test]
    fn free_failures_then_doubling_delay_up_to_the_ceiling() {
        let mut t = AuthThrottle::default();
        let now = Millis(1000);
        for _ in 0..AUTH_FREE_FAILURES - 1 {
            t.failed(IP, Some("alice"), now);
        }
        assert_eq!(t.delay_ms(IP, Some("alice"), now), 0);
        let crossed = t.failed(IP, Some("alice"), now);
        assert_eq!(crossed, vec![Key::Ip(IP), Key::Account("alice".into())]);
        assert_eq!(t.delay_ms(IP, None, now), 1000);
        assert!(
            t.failed(IP, Some("alice"), now).is_empty(),
            "logged once per window"
        );
        assert_eq!(t.delay_ms(IP, None, now), 2000);
        for _ in 0..20 {
            t.failed(IP, None, now);
        }
        assert_eq!(t.delay_ms(IP, None, now), AUTH_MAX_DELAY_MS);
    }

    #[test]
    fn account_throttle_applies_from_any_address_and_expires() {
        let mut t = AuthThrottle::default();
        let other = IpAddr::V4(core::net::Ipv4Addr::new(10, 0, 0, 1));
        for i in 0..AUTH_FREE_FAILURES + 1 {
            let ip = IpAddr::V4(core::net::Ipv4Addr::new(10, 0, 1, i as u8));
            t.failed(ip, Some("bob"), Millis(0));
        }
        assert_eq!(t.delay_ms(other, Some("bob"), Millis(0)), 2000);
        assert_eq!(t.delay_ms(other, Some("carol"), Millis(0)), 0);
        assert_eq!(
            t.delay_ms(other, Some("bob"), Millis(WINDOW_MS)),
            0,
            "window over"
        );
        t.succeeded("bob");
        assert_eq!(t.delay_ms(other, Some("bob"), Millis(1)), 0);
    }

    #[test]
    fn table_is_bounded() {
        let mut t = AuthThrottle::default();
        for i in 0..(CAP_THROTTLE_ENTRIES as u32 * 3) {
            let ip = IpAddr::V4(core::net::Ipv4Addr::from(i));
            t.failed(ip, None, Millis(u64::from(i)));
        }
        assert_eq!(t.len(), CAP_THROTTLE_ENTRIES);
    }
}
