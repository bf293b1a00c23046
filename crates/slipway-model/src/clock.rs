use jiff::Timestamp;

/// Where slipway reads the time from, so that schedules can run against a virtual clock in simulations and
/// tests while production reads the system clock.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The real clock of the machine.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that stands still until told to move: simulations run months of schedules in seconds with it,
/// and tests pin the time. Clones share the same time.
#[derive(Debug, Clone)]
pub struct VirtualClock {
    /// Microseconds since the Unix epoch; atomic so that the engine's tasks read it without a lock.
    micros: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl VirtualClock {
    /// A clock showing `at`.
    pub fn new(at: Timestamp) -> Self {
        Self {
            micros: std::sync::Arc::new(std::sync::atomic::AtomicI64::new(at.as_microsecond())),
        }
    }

    /// Moves the clock to `at`. Going backwards is allowed (a test may need it); schedules that read the
    /// clock must not assume otherwise.
    pub fn set(&self, at: Timestamp) {
        self.micros
            .store(at.as_microsecond(), std::sync::atomic::Ordering::Release);
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: jiff::SignedDuration) {
        self.set(self.now().saturating_add(by).unwrap_or(Timestamp::MAX));
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Timestamp {
        let micros = self.micros.load(std::sync::atomic::Ordering::Acquire);
        Timestamp::from_microsecond(micros).unwrap_or(Timestamp::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_virtual_clock_moves_only_when_told_and_clones_share_it() {
        let start: Timestamp = "2026-11-21T03:00:00Z".parse().expect("timestamp");
        let clock = VirtualClock::new(start);
        let shared = clock.clone();
        assert_eq!(clock.now(), start);
        shared.advance(jiff::SignedDuration::from_hours(25));
        assert_eq!(
            clock.now(),
            "2026-11-22T04:00:00Z"
                .parse::<Timestamp>()
                .expect("timestamp")
        );
        clock.set(start);
        assert_eq!(shared.now(), start);
    }
}
