//! `find` answered with the stored BSON: no decode of whole documents, no re-encode.
//!
//! The general [`Db::find`] decodes every fetched document into a `bson::Document`, runs
//! the matcher on it, and the wire layer encodes it again for the reply. For a find
//! without a projection whose order the scan itself provides (no sort, or a sort the
//! chosen index delivers), the reply can carry the stored bytes as they are; the only
//! decoding needed is of the top-level fields the filter reads
//! ([`crate::matcher::Matcher::root_fields`]), since a document restricted to those
//! fields matches exactly when the whole one does. Filters that may read the whole
//! document (`$expr`), `$or` unions, projections and in-memory sorts keep the general
//! path, so this stream returns the same documents in the same order as `find` would.

use std::sync::Arc;

use bson::{Bson, Document, RawDocument, RawDocumentBuf};

use crate::catalog::index_prefix;
use crate::cursor::{self, ExecStats, RawIter};
use crate::db::{Db, FindOptions};
use crate::error::{Error, Result};
use crate::matcher::Matcher;
use crate::planner::{self, Access};
use crate::sort::SortSpec;

/// A query stream of stored documents as BSON (see the module documentation).
pub struct RawCursor {
    iter: Box<dyn Iterator<Item = Result<RawDocumentBuf>> + Send>,
}

impl Iterator for RawCursor {
    type Item = Result<RawDocumentBuf>;

    fn next(&mut self) -> Option<Self::Item> {
        self.iter.next()
    }
}

fn corrupt(e: impl std::fmt::Display) -> Error {
    Error::internal(format!("corrupt stored document: {e}"))
}

/// The elements of a stored document named in `fields` (in stored order).
fn decode_fields(bytes: &[u8], fields: &[String]) -> Result<Document> {
    let mut out = Document::new();
    if fields.is_empty() {
        return Ok(out);
    }
    let raw = RawDocument::from_bytes(bytes).map_err(corrupt)?;
    let mut left = fields.len();
    for element in raw.iter() {
        let (k, v) = element.map_err(corrupt)?;
        let k = k.as_str();
        if fields.iter().any(|f| f == k) {
            out.insert(k, Bson::try_from(v).map_err(corrupt)?);
            left -= 1;
            if left == 0 {
                break;
            }
        }
    }
    Ok(out)
}

impl Db {
    /// `find` as a stream of stored BSON, when the query allows it (no projection, no
    /// in-memory sort, no `$expr`, no `$or` union); `Ok(None)` means "use [`Db::find`]".
    /// Errors are those `find` reports for the same options (invalid filter or sort).
    /// A missing collection also answers `None`: `find` then returns its empty cursor.
    pub fn find_raw(&self, db: &str, coll: &str, opts: &FindOptions) -> Result<Option<RawCursor>> {
        if opts.projection.as_ref().is_some_and(|p| !p.is_empty()) {
            return Ok(None);
        }
        let Some(meta) = self.meta(db, coll) else {
            return Ok(None);
        };
        let matcher = Matcher::new(&opts.filter)?;
        let sort = opts
            .sort
            .as_ref()
            .filter(|s| !s.is_empty())
            .map(SortSpec::parse)
            .transpose()?;
        let Some(fields) = matcher.root_fields() else {
            return Ok(None);
        };
        let stats = Arc::new(ExecStats::default());
        let source: RawIter = if opts.hint.is_none()
            && let Some(id) = crate::point::id_equality(&opts.filter)
        {
            Box::new(self.get_by_id(&meta.data_prefix(), id)?.into_iter().map(Ok))
        } else {
            match planner::plan(&meta, &opts.filter, sort.as_ref(), opts.hint.as_ref())? {
                Access::Or(_) => return Ok(None),
                Access::CollScan { .. } if sort.is_some() => return Ok(None),
                Access::CollScan { reverse } => cursor::coll_scan_raw(
                    self.kv().snapshot()?,
                    meta.data_prefix(),
                    None,
                    reverse,
                    stats,
                    false,
                ),
                Access::Index(s) if sort.is_some() && !s.provides_sort => return Ok(None),
                Access::Index(s) => {
                    let snap = self.kv().snapshot()?;
                    match s.index {
                        None => cursor::coll_scan_raw(
                            snap,
                            meta.data_prefix(),
                            Some(s.ranges),
                            s.reverse,
                            stats,
                            true,
                        ),
                        Some(ix) => {
                            let ip = index_prefix(ix.id);
                            cursor::index_scan_raw(
                                snap,
                                ix,
                                ip,
                                meta.data_prefix(),
                                s.ranges,
                                s.reverse,
                                stats,
                            )
                        }
                    }
                }
            }
        };
        let source: RawIter = if opts.interrupt.is_armed() {
            Box::new(crate::interrupt::Checked::new(source, &opts.interrupt))
        } else {
            source
        };
        let matched = source.filter_map(move |r| {
            let step = || -> Result<Option<RawDocumentBuf>> {
                let bytes = r?;
                if !matcher.matches(&decode_fields(&bytes, &fields)?)? {
                    return Ok(None);
                }
                Ok(Some(RawDocumentBuf::from_bytes(bytes).map_err(corrupt)?))
            };
            step().transpose()
        });
        let mut iter: Box<dyn Iterator<Item = Result<RawDocumentBuf>> + Send> = Box::new(matched);
        if opts.skip > 0 {
            iter = Box::new(iter.skip(opts.skip as usize));
        }
        if opts.limit > 0 {
            iter = Box::new(iter.take(opts.limit as usize));
        }
        Ok(Some(RawCursor { iter }))
    }
}
