//! docdb — the document engine of Strongroom (below the wire protocol).
//!
//! Layer 1 (pure logic): [`order`], [`keycodec`], [`path`], [`depth`], [`matcher`], [`expr`],
//! [`projection`], [`update`], [`sort`], [`aggregate`], [`spill`].
//! Layer 2 (storage-backed): [`kv`] (the engine contract, implemented for the encrypted
//! engine in [`engine`]), [`catalog`], [`index`], [`planner`], [`point`] (`_id` lookups
//! without the planner), [`cursor`], and the [`Db`]
//! facade ([`db`], [`collection`] writes, [`index_ddl`], [`query`] reads).
//! See `docs/docdb.md` for formats, semantics and the public API.
pub mod aggregate;
pub mod catalog;
pub mod collection;
pub mod cursor;
pub mod db;
pub mod depth;
pub mod engine;
pub mod error;
pub mod exactnum;
pub mod expr;
pub mod index;
pub mod index_ddl;
pub mod interrupt;
pub mod keycodec;
pub mod kv;
pub mod matcher;
pub mod memkv;
pub mod numeric;
pub mod order;
pub mod path;
pub mod planner;
pub mod point;
pub mod projection;
pub mod query;
pub mod rawdoc;
pub mod rawfind;
pub mod sort;
pub mod spill;
pub mod tempquota;
pub mod update;

pub use cursor::Cursor;
pub use db::{
    AggregateOptions, CollectionStats, Commit, CreateIndexesResult, DatabaseInfo, Db, DbConfig,
    DeleteOp, DeleteResult, FindAndModifyOptions, FindAndModifyResult, FindOptions, InsertResult,
    UpdateDoc, UpdateOp, UpdateResult, WriteError,
};
pub use error::{Error, ErrorCode, Result};
pub use interrupt::Interrupt;
pub use point::{PointRead, id_equality};
pub use rawfind::RawCursor;
pub use tempquota::TempUsage;
