//! What the server knows about one connected client: its connection id and address,
//! who it authenticated as, an in-progress SASL conversation, negotiated compressors.

use std::net::SocketAddr;

use crate::auth::roles::RoleGrant;
use crate::auth::scram::Conversation;
use crate::compression::Compressor;

/// An authenticated user of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    pub user: String,
    pub db: String,
    pub roles: Vec<RoleGrant>,
}

/// A SASL conversation between `saslStart` and its last `saslContinue`.
pub struct SaslState {
    pub conversation_id: i32,
    pub db: String,
    pub skip_empty_exchange: bool,
    pub conversation: Conversation,
    /// The user's roles, `None` for a decoy exchange (unknown user).
    pub roles: Option<Vec<RoleGrant>>,
    /// Whether the verified identity was already attached to the connection.
    pub applied: bool,
    /// The users generation read before the user's record was.
    pub users_generation: u64,
}

/// Per-connection state.
pub struct Client {
    pub connection_id: i64,
    pub peer: SocketAddr,
    pub user: Option<AuthUser>,
    /// The users generation `user`'s roles were read at (see
    /// [`crate::auth::directory::Directory`]).
    pub users_generation: u64,
    pub sasl: Option<SaslState>,
    pub compressors: Vec<Compressor>,
    /// Whether the client already sent its handshake metadata (`client` in hello),
    /// which MongoDB accepts only once per connection.
    pub handshake_done: bool,
    /// Whether this connection has the server to itself for the request being handled:
    /// nothing else is in flight, and the request before it (server-wide) was this
    /// connection's too. Set per request by the connection loop.
    pub alone: bool,
    next_conversation_id: i32,
}

impl Client {
    pub fn new(connection_id: i64, peer: SocketAddr) -> Client {
        Client {
            connection_id,
            peer,
            user: None,
            users_generation: 0,
            sasl: None,
            compressors: Vec::new(),
            handshake_done: false,
            alone: false,
            next_conversation_id: 1,
        }
    }

    pub fn next_conversation_id(&mut self) -> i32 {
        let id = self.next_conversation_id;
        self.next_conversation_id = self.next_conversation_id.wrapping_add(1).max(1);
        id
    }

    /// `(user, db)` for cursor ownership.
    pub fn identity(&self) -> Option<(String, String)> {
        self.user.as_ref().map(|u| (u.user.clone(), u.db.clone()))
    }
}
