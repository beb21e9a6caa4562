//! Authentication (SCRAM-SHA-256) and authorisation (built-in roles).

pub mod directory;
pub mod roles;
pub mod scram;
pub mod users;
