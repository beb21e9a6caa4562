//! What every connection must agree on about users: which user is the cluster's
//! administrator, and a generation counter that moves each time a user's roles or
//! existence change.
//!
//! A connection remembers the generation its roles were read at; when the counter has
//! moved, its next command re-reads the user's record first (MongoDB invalidates its
//! user cache the same way), so a revoked role or a dropped user takes effect on open
//! connections at their next command, not at their next login.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

use crate::auth::users::USERS_DB;

/// Shared user state (one per server).
#[derive(Default)]
pub struct Directory {
    generation: AtomicU64,
    admin: RwLock<Option<String>>,
}

impl Directory {
    /// The current users generation.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Records that a user's roles or existence changed (call after the change is
    /// stored, so a connection that re-reads sees it).
    pub fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Names the cluster's administrator (`admin.<user>`), which the MongoDB API may not
    /// drop, demote, or give a new password to (except the administrator itself).
    pub fn set_admin(&self, user: &str) {
        *self.admin.write() = Some(user.to_string());
    }

    /// Is `db.user` the cluster's administrator?
    pub fn is_admin(&self, db: &str, user: &str) -> bool {
        db == USERS_DB && self.admin.read().as_deref() == Some(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_administrator_is_a_user_of_admin_and_changes_move_the_generation() {
        let d = Directory::default();
        assert!(!d.is_admin("admin", "root"), "no administrator named yet");
        d.set_admin("root");
        assert!(d.is_admin("admin", "root"));
        assert!(!d.is_admin("app", "root"), "app.root is another user");
        let g = d.generation();
        d.changed();
        assert!(d.generation() > g);
    }
}
