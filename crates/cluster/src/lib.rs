//! How the control plane drives a node process: the protocol ([`protocol`]) and the
//! supervisor's side of it ([`supervisor`]: spawn, command, read answers and notices).
//!
//! The node itself (engine, wire server, backup thread, recovery, jobs) lives in the
//! `node` crate; this crate is deliberately light, so that the control plane, which
//! depends on it, never links the storage engine, the database or the wire server.
//!
//! The supervisor (control plane) spawns `strongroom node` as a child process and drives
//! it over the child's stdin with a tiny binary protocol: `Init` (TLS identity and listen
//! address), `Open` (the unwrapped root DEK), `Lock` (Inaccessible, with the reason),
//! `ResetAdminPassword` and `Shutdown`. A one-shot job process (`strongroom node --job`)
//! gets one `Job` frame instead (a restore, an export, a verification: the keys it needs
//! as raw bytes) and exits after its result. Nodes and jobs answer with JSON-line events
//! on stdout.
//!
//! Why a separate process: the revocation promise is that an Inaccessible cluster holds no
//! key material. A node's memory only ever sees the root DEK in zeroizing buffers it
//! owns, never in HTTP client buffers of vault calls, so "wipe on Lock" is something a
//! test can verify by reading the node's memory. It also lets tests kill a node with
//! SIGKILL and watch the supervisor bring it back; and the control plane, which talks to
//! the vaults, never opens an engine or a sealed backup file.

pub mod protocol;
pub mod supervisor;
