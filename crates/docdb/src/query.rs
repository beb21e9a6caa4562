//! Reads on [`Db`]: planning a filter into a document source, find, count, distinct,
//! aggregate and explain.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bson::{Bson, Document, doc};

use crate::aggregate::Pipeline;
use crate::catalog::{CollectionMeta, index_prefix};
use crate::cursor::{self, Cursor, ExecStats};
use crate::db::*;
use crate::error::{Error, Result};
use crate::interrupt::{Checked, Interrupt};
use crate::keycodec;
use crate::matcher::Matcher;
use crate::path;
use crate::planner::{self, Access};
use crate::projection::Projection;
use crate::sort::SortSpec;
use crate::spill::{DocIter, ExternalSorter, SpillConfig};

impl Db {
    // ----- reads -----

    fn scan_iter(
        &self,
        meta: &CollectionMeta,
        snap: Arc<dyn crate::kv::KvSnapshot>,
        s: planner::IndexScan,
        stats: Arc<ExecStats>,
    ) -> DocIter {
        match s.index {
            None => cursor::coll_scan(
                snap,
                meta.data_prefix(),
                Some(s.ranges),
                s.reverse,
                stats,
                true,
            ),
            Some(ix) => {
                let ip = index_prefix(ix.id);
                cursor::index_scan(snap, ix, ip, meta.data_prefix(), s.ranges, s.reverse, stats)
            }
        }
    }

    /// The document source for a filter: returns the iterator and whether it already
    /// yields documents in `sort` order.
    pub(crate) fn source(
        &self,
        meta: &CollectionMeta,
        filter: &Document,
        sort: Option<&SortSpec>,
        hint: Option<&Bson>,
        stats: Arc<ExecStats>,
        interrupt: &Interrupt,
    ) -> Result<(DocIter, bool)> {
        let (it, sorted) = self.unchecked_source(meta, filter, sort, hint, stats)?;
        if !interrupt.is_armed() {
            return Ok((it, sorted));
        }
        // Every scan (collection, index, `$or` union) is polled as it yields, so a scan
        // whose filter rejects everything still stops at the deadline.
        Ok((Box::new(Checked::new(it, interrupt)), sorted))
    }

    fn unchecked_source(
        &self,
        meta: &CollectionMeta,
        filter: &Document,
        sort: Option<&SortSpec>,
        hint: Option<&Bson>,
        stats: Arc<ExecStats>,
    ) -> Result<(DocIter, bool)> {
        if hint.is_none()
            && let Some(id) = crate::point::id_equality(filter)
        {
            // One `get` instead of planning a point range and scanning it: the stream
            // has at most one document, so it is in any requested order. The counters
            // are what the `_id_` IXSCAN would have reported.
            let found = self.get_by_id(&meta.data_prefix(), id)?;
            if found.is_some() {
                stats.keys_examined.fetch_add(1, Ordering::Relaxed);
                stats.docs_examined.fetch_add(1, Ordering::Relaxed);
            }
            let it = found.into_iter().map(|v| cursor::decode_doc(&v));
            return Ok((Box::new(it), true));
        }
        let access = planner::plan(meta, filter, sort, hint)?;
        let snap = self.kv().snapshot()?;
        Ok(match access {
            Access::Or(scans) => {
                let mut parts: Vec<DocIter> = Vec::with_capacity(scans.len());
                for s in scans {
                    parts.push(self.scan_iter(meta, snap.clone(), s, stats.clone()));
                }
                let mut seen: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
                let it = parts.into_iter().flatten().filter(move |r| match r {
                    Ok(d) => seen.insert(keycodec::encode(d.get("_id").unwrap_or(&Bson::Null))),
                    Err(_) => true,
                });
                (Box::new(it) as DocIter, false)
            }
            Access::CollScan { reverse } => (
                cursor::coll_scan(snap, meta.data_prefix(), None, reverse, stats, false),
                false,
            ),
            Access::Index(s) => {
                let sorted = s.provides_sort;
                match s.index {
                    None => (
                        cursor::coll_scan(
                            snap,
                            meta.data_prefix(),
                            Some(s.ranges),
                            s.reverse,
                            stats,
                            true,
                        ),
                        sorted,
                    ),
                    Some(ix) => {
                        let ip = index_prefix(ix.id);
                        (
                            cursor::index_scan(
                                snap,
                                ix,
                                ip,
                                meta.data_prefix(),
                                s.ranges,
                                s.reverse,
                                stats,
                            ),
                            sorted,
                        )
                    }
                }
            }
        })
    }

    fn find_iter(
        &self,
        meta: &CollectionMeta,
        opts: &FindOptions,
        stats: Arc<ExecStats>,
    ) -> Result<DocIter> {
        let m = Matcher::new(&opts.filter)?;
        let sort = opts
            .sort
            .as_ref()
            .filter(|s| !s.is_empty())
            .map(SortSpec::parse)
            .transpose()?;
        let proj = opts
            .projection
            .as_ref()
            .filter(|p| !p.is_empty())
            .map(|p| Projection::new(p).map(|p| p.with_query(&opts.filter)))
            .transpose()?;
        let (src, sorted) = self.source(
            meta,
            &opts.filter,
            sort.as_ref(),
            opts.hint.as_ref(),
            stats.clone(),
            &opts.interrupt,
        )?;
        let mut it: DocIter = Box::new(src.filter_map(move |r| match r {
            Ok(d) => match m.matches(&d) {
                Ok(true) => Some(Ok(d)),
                Ok(false) => None,
                Err(e) => Some(Err(e)),
            },
            Err(e) => Some(Err(e)),
        }));
        if let (Some(s), false) = (sort, sorted) {
            let cfg = self.spill_config(opts.allow_disk_use, &opts.interrupt);
            let k = if opts.limit > 0 {
                Some((opts.limit + opts.skip) as usize)
            } else {
                None
            };
            let input = it;
            let st = stats.clone();
            it = Box::new(LazySort {
                state: Some((s, cfg, k, input, st)),
                out: None,
            });
        }
        if opts.skip > 0 {
            it = Box::new(it.skip(opts.skip as usize));
        }
        if opts.limit > 0 {
            it = Box::new(it.take(opts.limit as usize));
        }
        if let Some(p) = proj {
            it = Box::new(it.map(move |r| r.and_then(|d| p.apply(&d))));
        }
        Ok(it)
    }

    /// `find`: a lazy cursor over a snapshot.
    pub fn find(&self, db: &str, coll: &str, opts: FindOptions) -> Result<Cursor> {
        let Some(meta) = self.meta(db, coll) else {
            // Validate anyway so malformed queries error even on missing collections.
            Matcher::new(&opts.filter)?;
            if let Some(p) = opts.projection.as_ref().filter(|p| !p.is_empty()) {
                Projection::new(p)?;
            }
            return Ok(Cursor::empty(ns(db, coll)));
        };
        let stats = Arc::new(ExecStats::default());
        let it = self.find_iter(&meta, &opts, stats.clone())?;
        Ok(Cursor::new(ns(db, coll), it, stats))
    }

    /// `count` (with optional skip/limit; 0 = none).
    pub fn count(
        &self,
        db: &str,
        coll: &str,
        filter: &Document,
        skip: u64,
        limit: u64,
    ) -> Result<u64> {
        self.count_with(db, coll, filter, skip, limit, &Interrupt::none())
    }

    /// [`Db::count`] bounded by `interrupt` (`maxTimeMS`).
    pub fn count_with(
        &self,
        db: &str,
        coll: &str,
        filter: &Document,
        skip: u64,
        limit: u64,
        interrupt: &Interrupt,
    ) -> Result<u64> {
        let opts = FindOptions {
            filter: filter.clone(),
            skip,
            limit,
            interrupt: interrupt.clone(),
            ..Default::default()
        };
        let mut n = 0;
        for d in self.find(db, coll, opts)? {
            d?;
            n += 1;
        }
        Ok(n)
    }

    /// `distinct`: distinct values at `key` (arrays contribute their elements), in
    /// MongoDB's value order.
    pub fn distinct(
        &self,
        db: &str,
        coll: &str,
        key: &str,
        filter: &Document,
    ) -> Result<Vec<Bson>> {
        self.distinct_with(db, coll, key, filter, &Interrupt::none())
    }

    /// [`Db::distinct`] bounded by `interrupt` (`maxTimeMS`).
    pub fn distinct_with(
        &self,
        db: &str,
        coll: &str,
        key: &str,
        filter: &Document,
        interrupt: &Interrupt,
    ) -> Result<Vec<Bson>> {
        if key.is_empty() {
            return Err(Error::bad_value(
                "FieldPath cannot be constructed with empty string",
            ));
        }
        let p = path::split(key)?;
        let mut seen: std::collections::BTreeMap<Vec<u8>, Bson> = std::collections::BTreeMap::new();
        let opts = FindOptions {
            filter: filter.clone(),
            interrupt: interrupt.clone(),
            ..Default::default()
        };
        for d in self.find(db, coll, opts)? {
            let d = d?;
            for leaf in path::leaves(&d, &p).into_iter().flatten() {
                let vals: Vec<&Bson> = match leaf {
                    Bson::Array(a) => a.iter().collect(),
                    v => vec![v],
                };
                for v in vals {
                    seen.entry(keycodec::encode(v)).or_insert_with(|| v.clone());
                }
            }
        }
        Ok(seen.into_values().collect())
    }

    /// `aggregate`: a leading `$match` (and `$sort`) is planned against indexes.
    pub fn aggregate(
        &self,
        db: &str,
        coll: &str,
        pipeline: &[Document],
        opts: AggregateOptions,
    ) -> Result<Cursor> {
        let p = Pipeline::parse(pipeline)?;
        let cfg = self.spill_config(opts.allow_disk_use, &opts.interrupt);
        let Some(meta) = self.meta(db, coll) else {
            return Ok(Cursor::new(
                ns(db, coll),
                p.run(Box::new(std::iter::empty()), &cfg),
                Arc::new(ExecStats::default()),
            ));
        };
        let mut p = p;
        let filter = match pipeline.first().and_then(|s| s.get("$match")) {
            Some(Bson::Document(f)) => f.clone(),
            _ => Document::new(),
        };
        // A $sort right after the leading $match (or first) may be served by an index.
        let sort_pos = if filter.is_empty()
            && !matches!(p.stages.first(), Some(crate::aggregate::Stage::Match(_)))
        {
            0
        } else {
            1
        };
        let sort = match p.stages.get(sort_pos) {
            Some(crate::aggregate::Stage::Sort(s)) => Some(s.clone()),
            _ => None,
        };
        let stats = Arc::new(ExecStats::default());
        let (src, sorted) = self.source(
            &meta,
            &filter,
            sort.as_ref(),
            opts.hint.as_ref(),
            stats.clone(),
            &opts.interrupt,
        )?;
        if sorted && sort.is_some() {
            p.stages.remove(sort_pos);
        }
        Ok(Cursor::new(ns(db, coll), p.run(src, &cfg), stats))
    }

    /// `explain` of an aggregation: the access path of the leading `$match` as a `$cursor`
    /// stage (with its `queryPlanner`/`executionStats`), followed by the remaining stages.
    pub fn explain_aggregate(
        &self,
        db: &str,
        coll: &str,
        pipeline: &[Document],
        opts: AggregateOptions,
    ) -> Result<Document> {
        Pipeline::parse(pipeline)?;
        let (filter, rest) = match pipeline.first().and_then(|s| s.get("$match")) {
            Some(Bson::Document(f)) => (f.clone(), &pipeline[1..]),
            _ => (Document::new(), pipeline),
        };
        let cursor = self.explain_find(
            db,
            coll,
            FindOptions {
                filter,
                hint: opts.hint,
                ..Default::default()
            },
        )?;
        let mut stages = vec![Bson::Document(doc! {"$cursor": cursor})];
        stages.extend(rest.iter().cloned().map(Bson::Document));
        Ok(doc! {"explainVersion": "1", "stages": stages})
    }

    /// `explain` of a find, with `queryPlanner` and `executionStats`.
    pub fn explain_find(&self, db: &str, coll: &str, opts: FindOptions) -> Result<Document> {
        let namespace = ns(db, coll);
        let Some(meta) = self.meta(db, coll) else {
            return Ok(doc! {
                "queryPlanner": {"namespace": namespace, "parsedQuery": opts.filter.clone(), "winningPlan": {"stage": "EOF"}, "rejectedPlans": []},
                "executionStats": {"executionSuccess": true, "nReturned": 0, "executionTimeMillis": 0, "totalKeysExamined": 0, "totalDocsExamined": 0},
            });
        };
        let sort = opts
            .sort
            .as_ref()
            .filter(|s| !s.is_empty())
            .map(SortSpec::parse)
            .transpose()?;
        let access = planner::plan(&meta, &opts.filter, sort.as_ref(), opts.hint.as_ref())?;
        let (mut stage, sorted) = match &access {
            Access::CollScan { reverse } => (
                doc! {"stage": "COLLSCAN", "filter": opts.filter.clone(), "direction": if *reverse { "backward" } else { "forward" }},
                false,
            ),
            Access::Or(scans) => {
                let inputs: Vec<Bson> = scans
                    .iter()
                    .map(|s| Bson::Document(ixscan_doc(s)))
                    .collect();
                (
                    doc! {"stage": "FETCH", "filter": opts.filter.clone(), "inputStage": {"stage": "OR", "inputStages": inputs}},
                    false,
                )
            }
            Access::Index(s) => {
                let ix = doc! {
                    "stage": "IXSCAN",
                    "keyPattern": s.key_pattern.clone(),
                    "indexName": &s.name,
                    "isMultiKey": s.multikey,
                    "isUnique": s.index.as_ref().is_none_or(|i| i.unique),
                    "isSparse": s.index.as_ref().is_some_and(|i| i.sparse),
                    "isPartial": s.index.as_ref().is_some_and(|i| i.partial.is_some()),
                    "direction": if s.reverse { "backward" } else { "forward" },
                    "indexBounds": s.bounds.clone(),
                };
                (
                    doc! {"stage": "FETCH", "filter": opts.filter.clone(), "inputStage": ix},
                    s.provides_sort,
                )
            }
        };
        if let (Some(s), false) = (&opts.sort, sorted)
            && !s.is_empty()
        {
            stage = doc! {"stage": "SORT", "sortPattern": s.clone(), "memLimit": self.inner.cfg.sort_memory_limit as i64, "type": "simple", "inputStage": stage};
        }
        if opts.skip > 0 {
            stage = doc! {"stage": "SKIP", "skipAmount": opts.skip as i64, "inputStage": stage};
        }
        if opts.limit > 0 {
            stage = doc! {"stage": "LIMIT", "limitAmount": opts.limit as i64, "inputStage": stage};
        }
        if opts.projection.as_ref().is_some_and(|p| !p.is_empty()) {
            stage = doc! {"stage": "PROJECTION_DEFAULT", "transformBy": opts.projection.clone().unwrap_or_default(), "inputStage": stage};
        }
        let started = Instant::now();
        let stats = Arc::new(ExecStats::default());
        let mut returned = 0i64;
        for d in self.find_iter(&meta, &opts, stats.clone())? {
            d?;
            returned += 1;
        }
        let (keys, docs, _) = stats.get();
        Ok(doc! {
            "queryPlanner": {
                "plannerVersion": 1,
                "namespace": namespace,
                "indexFilterSet": false,
                "parsedQuery": opts.filter.clone(),
                "winningPlan": stage.clone(),
                "rejectedPlans": [],
            },
            "executionStats": {
                "executionSuccess": true,
                "nReturned": returned,
                "executionTimeMillis": started.elapsed().as_millis() as i64,
                "totalKeysExamined": keys as i64,
                "totalDocsExamined": docs as i64,
                "executionStages": stage,
            },
        })
    }
}

fn ixscan_doc(s: &planner::IndexScan) -> Document {
    doc! {
        "stage": "IXSCAN",
        "keyPattern": s.key_pattern.clone(),
        "indexName": &s.name,
        "isMultiKey": s.multikey,
        "direction": if s.reverse { "backward" } else { "forward" },
        "indexBounds": s.bounds.clone(),
    }
}

/// A blocking sort started on first `next()`.
type SortJob = (
    SortSpec,
    SpillConfig,
    Option<usize>,
    DocIter,
    Arc<ExecStats>,
);

struct LazySort {
    state: Option<SortJob>,
    out: Option<DocIter>,
}

impl Iterator for LazySort {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some((spec, cfg, k, input, stats)) = self.state.take() {
            let r = (|| -> Result<DocIter> {
                let mut s = ExternalSorter::new(spec, cfg);
                if let Some(k) = k {
                    s = s.with_limit(k);
                }
                for d in input {
                    s.push(d?)?;
                }
                stats
                    .spills
                    .fetch_add(s.spills as u64, std::sync::atomic::Ordering::Relaxed);
                s.finish()
            })();
            match r {
                Ok(it) => self.out = Some(it),
                Err(e) => return Some(Err(e)),
            }
        }
        self.out.as_mut()?.next()
    }
}
