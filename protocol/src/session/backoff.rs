//! Reconnection delays: exponential backoff with randomized jitter, as the
//! Socket.IO client computes them, so thousands of clients dropped at once (a
//! deploy, a restart) do not all come back in the same instant.

use std::time::Duration;

/// Reconnection policy. The defaults are Socket.IO's: 1 s growing by 2× per
/// attempt up to 5 s, jitter 0.5 (each delay randomly within ±50%), unlimited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
    pub factor: f64,
    /// Fraction of the delay, 0 to 1, by which each delay is randomly moved.
    pub jitter: f64,
    /// Attempts before giving up; `None` retries forever.
    pub max_attempts: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            min: Duration::from_secs(1),
            max: Duration::from_secs(5),
            factor: 2.0,
            jitter: 0.5,
            max_attempts: None,
        }
    }
}

impl Backoff {
    /// The delay before attempt `attempt` (0 for the first), given `random`, a
    /// uniform number in [0, 1). Socket.IO's formula: `min × factor^attempt`, moved
    /// down or up by `random × jitter` of itself, capped at `max`.
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let exponent = i32::try_from(attempt.min(64)).unwrap_or(64);
        let base = self.min.as_secs_f64() * self.factor.max(1.0).powi(exponent);
        let base = base.min(self.max.as_secs_f64() * 2.0);
        let jitter = self.jitter.clamp(0.0, 1.0);
        let random = random.clamp(0.0, 1.0);
        let deviation = random * jitter * base;
        // The tenths digit of the same random number picks the direction.
        let down = ((random * 10.0).floor() as u64).is_multiple_of(2);
        let ms = if down {
            base - deviation
        } else {
            base + deviation
        };
        Duration::from_secs_f64(ms.min(self.max.as_secs_f64()).max(0.0))
    }

    /// Whether attempt `attempt` (0 for the first) may be made.
    pub fn allows(&self, attempt: u32) -> bool {
        self.max_attempts.is_none_or(|max| attempt < max)
    }
}

/// A small deterministic random source (xorshift64*): the protocol crate reads
/// no clock and no OS randomness; the driver seeds it.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // Zero is xorshift's one fixed point.
        Rng(seed | 1)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let bits = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        bits as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(f64) -> Duration = Duration::from_secs_f64;

    #[test]
    fn grows_to_the_cap_without_jitter() {
        let b = Backoff {
            jitter: 0.0,
            ..Backoff::default()
        };
        let delays: Vec<Duration> = (0..5).map(|a| b.delay(a, 0.5)).collect();
        assert_eq!(delays, vec![S(1.0), S(2.0), S(4.0), S(5.0), S(5.0)]);
        assert_eq!(b.delay(1000, 0.5), S(5.0));
    }

    #[test]
    fn jitter_moves_within_its_fraction() {
        let b = Backoff::default();
        // random 0.2: tenths digit 2 (even) → down by 0.2 × 0.5 = 10%.
        assert_eq!(b.delay(0, 0.2), S(0.9));
        // random 0.3: odd → up by 15%.
        assert_eq!(b.delay(1, 0.3), S(2.3));
        for i in 0..1000 {
            let d = b.delay(0, f64::from(i) / 1000.0);
            assert!(d >= S(0.5) && d <= S(1.5), "{d:?}");
        }
    }

    #[test]
    fn attempts_limit() {
        let b = Backoff {
            max_attempts: Some(2),
            ..Backoff::default()
        };
        assert!(b.allows(0) && b.allows(1) && !b.allows(2));
        assert!(Backoff::default().allows(u32::MAX));
    }

    #[test]
    fn rng_is_uniform_enough_and_seeded() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let xs: Vec<f64> = (0..10_000).map(|_| a.next_f64()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
        assert_eq!(xs[0], b.next_f64());
        assert_ne!(Rng::new(1).next_f64(), Rng::new(2).next_f64());
    }
}
