//! A cluster node: one process that serves one cluster's MongoDB endpoint.
//!
//! The control plane talks to key vaults; a node never does. The supervisor (control
//! plane) spawns `strongroom node` as a child process and drives it over the child's
//! stdin with a tiny binary protocol ([`protocol`]): `Init` (TLS identity and listen
//! address), `Open` (the unwrapped root DEK), `Lock` (Inaccessible, with the reason) and
//! `Shutdown`. The node answers with JSON-line events on stdout.
//!
//! Why a separate process: the revocation promise is that an Inaccessible cluster holds no
//! key material. The node's memory only ever sees the root DEK in zeroizing buffers it
//! owns, never in HTTP client buffers of vault calls, so "wipe on Lock" is something a
//! test can verify by reading the node's memory. It also lets tests kill a node with
//! SIGKILL and watch the supervisor bring it back.
//!
//! A storage failure (a full disk, an I/O error) makes the engine read-only; the node
//! reports it (`ReadOnly`), reopens the engine once that can work and reports `Writable`,
//! without restarting ([`recovery`]).

mod backups;
pub mod node;
pub mod protocol;
pub mod recovery;
pub mod supervisor;
