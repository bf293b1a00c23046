//! Whether a lock is still what the repositories would give.

/// One reason a lock is out of date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockChange {}

/// The result of checking a lock against the current indexes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockCheck {}

/// Checks a lock against the indexes.
pub fn check_lock() -> LockCheck {
    LockCheck::default()
}
