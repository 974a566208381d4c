//! Time as the protocol core sees it: a number handed in by the shell, never read from a
//! clock here (STYLE.md: pass time in), so tests drive it with a fake clock.

use std::ops::Add;

/// Monotonic milliseconds since the server started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millis(pub u64);

impl Millis {
    pub fn saturating_sub(self, other: Millis) -> u64 {
        self.0.saturating_sub(other.0)
    }
}

impl Add<u64> for Millis {
    type Output = Millis;
    fn add(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }
}

/// Randomness for stream ids, SCRAM nonces and generated resources. The shell supplies the
/// operating system's generator; tests supply a seeded one.
pub trait Entropy {
    fn fill(&mut self, buf: &mut [u8]);
}
