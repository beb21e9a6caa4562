//! Leveled compaction.
//!
//! Policy (bounds):
//! * L0 -> L1 when L0 holds [`L0_TRIGGER`] tables: all L0 tables plus the overlapping L1
//!   tables are merged into L1. Writers stall at 20 L0 tables, so a point read checks at
//!   most ~20 L0 tables + one table per deeper level (bloom filters skip most of them).
//! * Level n (n >= 1) has a target size `8 x memtable_bytes x 10^(n-1)`; the level with the
//!   highest size/target ratio above 1 pushes one table (round-robin by key) plus the
//!   overlapping tables of level n+1 down. With ratio 10 the space amplification of the
//!   steady state is about 1.11x (plus L0 and obsolete files awaiting release).
//! * Versions: per key, every version newer than the oldest live snapshot is kept, plus the
//!   newest version at or below it; older ones are dropped. A tombstone is dropped when it
//!   is that last version and the output level is the bottom for its key range.
//! * Output tables are cut at ~2 x memtable_bytes, only between user keys (so levels >= 1
//!   never split one key's versions across tables), and are sealed under the newest data
//!   key: compaction re-encrypts old data as a side effect.

use std::sync::Arc;

use crate::crypto::keys::DataKey;
use crate::engine::Inner;
use crate::error::Result;
use crate::iterators::level::LevelSource;
use crate::iterators::merge::Merger;
use crate::iterators::{Direction, Entry, Source};
use crate::table::{Table, TableBuilder, table_name};
use crate::version::{NUM_LEVELS, Version};

/// L0 table count that triggers an L0 -> L1 compaction.
pub(crate) const L0_TRIGGER: usize = 4;

pub(crate) struct Task {
    inputs: Vec<Arc<Table>>,
    output_level: usize,
    bottom: bool,
    /// Inputs overlap nothing at the output level (nor each other): move them by a
    /// manifest edit instead of rewriting.
    trivial: bool,
}

fn pairwise_disjoint(ts: &[Arc<Table>]) -> bool {
    let mut v: Vec<&Arc<Table>> = ts.iter().collect();
    v.sort_by(|a, b| a.smallest.cmp(&b.smallest));
    v.windows(2).all(|w| w[0].largest < w[1].smallest)
}

/// Splits `inputs` into runs of pairwise-disjoint tables in key order, so the merge
/// compares one key per run instead of one per table: the tables of the output level form
/// one run however many there are, and each overlapping L0 table adds one. Greedy
/// interval partitioning by smallest key, which needs no more runs than the deepest
/// overlap. Tables in one run share no key, so a key's versions still meet in the merge.
fn sorted_runs(inputs: &[Arc<Table>]) -> Vec<Vec<Arc<Table>>> {
    let mut sorted: Vec<&Arc<Table>> = inputs.iter().collect();
    sorted.sort_by(|a, b| a.smallest.cmp(&b.smallest));
    let mut runs: Vec<Vec<Arc<Table>>> = Vec::new();
    for t in sorted {
        match runs
            .iter_mut()
            .find(|r| r.last().is_some_and(|last| last.largest < t.smallest))
        {
            Some(run) => run.push(t.clone()),
            None => runs.push(vec![t.clone()]),
        }
    }
    runs
}

impl Inner {
    fn level_target(&self, l: usize) -> u64 {
        let base = (self.memtable_bytes as u64).saturating_mul(8);
        base.saturating_mul(10u64.saturating_pow(l.saturating_sub(1) as u32))
    }

    fn target_file_size(&self) -> u64 {
        (self.memtable_bytes as u64 * 2).clamp(64 << 10, 64 << 20)
    }

    /// Whether any level is over its bound, i.e. [`pick_compaction`](Self::pick_compaction)
    /// would find work. Unlike it, this leaves the round-robin cursors alone.
    pub(crate) fn compaction_due(&self) -> bool {
        let v = self.sv.read().version.clone();
        v.levels[0].len() >= L0_TRIGGER
            || (1..NUM_LEVELS - 1).any(|l| self.level_score(&v, l) > 1.0)
    }

    /// Level `l`'s size over its target; above 1 the level needs compacting.
    fn level_score(&self, v: &Version, l: usize) -> f64 {
        v.level_bytes(l) as f64 / self.level_target(l) as f64
    }

    /// Chooses the next compaction, if any level is over its bound.
    pub(crate) fn pick_compaction(&self) -> Option<Task> {
        let v = self.sv.read().version.clone();
        let overlapping = |level: usize, lo: &[u8], hi: &[u8]| -> Vec<Arc<Table>> {
            v.levels[level]
                .iter()
                .filter(|t| t.overlaps(lo, hi))
                .cloned()
                .collect()
        };
        let is_bottom = |out: usize, lo: &[u8], hi: &[u8]| {
            v.levels
                .iter()
                .skip(out + 1)
                .all(|l| l.iter().all(|t| !t.overlaps(lo, hi)))
        };
        if v.levels[0].len() >= L0_TRIGGER {
            let mut inputs: Vec<Arc<Table>> = v.levels[0].clone();
            let lo = inputs
                .iter()
                .map(|t| t.smallest.clone())
                .min()
                .unwrap_or_default();
            let hi = inputs
                .iter()
                .map(|t| t.largest.clone())
                .max()
                .unwrap_or_default();
            let trivial = pairwise_disjoint(&inputs)
                && inputs
                    .iter()
                    .all(|t| overlapping(1, &t.smallest, &t.largest).is_empty());
            if !trivial {
                inputs.extend(overlapping(1, &lo, &hi));
            }
            return Some(Task {
                bottom: is_bottom(1, &lo, &hi),
                inputs,
                output_level: 1,
                trivial,
            });
        }
        let mut best: Option<(f64, usize)> = None;
        for l in 1..NUM_LEVELS - 1 {
            let score = self.level_score(&v, l);
            if score > 1.0 && best.is_none_or(|(s, _)| score > s) {
                best = Some((score, l));
            }
        }
        let (_, l) = best?;
        let mut cursor = self.compact_cursor.lock();
        let t = v.levels[l]
            .iter()
            .find(|t| t.smallest > cursor[l])
            .or_else(|| v.levels[l].first())?
            .clone();
        cursor[l] = t.largest.clone();
        let mut inputs = vec![t.clone()];
        let below = overlapping(l + 1, &t.smallest, &t.largest);
        let trivial = below.is_empty();
        inputs.extend(below);
        Some(Task {
            bottom: is_bottom(l + 1, &t.smallest, &t.largest),
            inputs,
            output_level: l + 1,
            trivial,
        })
    }

    pub(crate) fn run_compaction(&self, task: Task) -> Result<()> {
        if task.trivial {
            tracing::debug!(
                tables = task.inputs.len(),
                level = task.output_level,
                "trivial move"
            );
            return self.install_move(task.output_level, task.inputs);
        }
        let key = self.newest_key()?;
        let outputs = self.merge_tables(
            &task.inputs,
            &key,
            true,
            task.bottom,
            self.target_file_size(),
        )?;
        tracing::debug!(
            inputs = task.inputs.len(),
            outputs = outputs.len(),
            level = task.output_level,
            "compaction done"
        );
        let add = outputs
            .into_iter()
            .map(|t| (task.output_level, t))
            .collect();
        self.install(add, task.inputs)
    }

    /// Merges every table into the deepest occupied level (at least L1).
    pub(crate) fn compact_full(&self) -> Result<()> {
        let _c = self.compaction_lock.lock();
        let v = self.sv.read().version.clone();
        let inputs: Vec<Arc<Table>> = v.tables().map(|(_, t)| t.clone()).collect();
        if inputs.is_empty() {
            return Ok(());
        }
        let output_level = (1..NUM_LEVELS)
            .rev()
            .find(|&l| !v.levels[l].is_empty())
            .unwrap_or(1);
        self.run_compaction(Task {
            inputs,
            output_level,
            bottom: true,
            trivial: false,
        })
    }

    /// Copies one table verbatim (every version) into a new file under `key`.
    pub(crate) fn rewrite_table(&self, t: &Arc<Table>, key: &Arc<DataKey>) -> Result<Table> {
        let mut out = self.merge_tables(std::slice::from_ref(t), key, false, false, u64::MAX)?;
        match out.pop() {
            Some(t) if out.is_empty() => Arc::try_unwrap(t).map_err(|_| {
                crate::Error::corruption(table_name(0), None, "rewrite output shared")
            }),
            _ => Err(crate::Error::corruption(
                table_name(t.id),
                None,
                "rewrite produced an unexpected number of tables",
            )),
        }
    }

    fn merge_tables(
        &self,
        inputs: &[Arc<Table>],
        key: &DataKey,
        drop_versions: bool,
        bottom: bool,
        target: u64,
    ) -> Result<Vec<Arc<Table>>> {
        let runs = sorted_runs(inputs);
        let mut sources: Vec<Box<dyn Source>> = Vec::with_capacity(runs.len());
        for run in runs {
            sources.push(Box::new(LevelSource::for_compaction(run)?));
        }
        let mut merger = Merger::new(sources, Direction::Forward);
        let oldest = self.oldest_snapshot();
        let mut finished: Vec<(u64, u64)> = Vec::new();
        let mut builder: Option<TableBuilder> = None;
        let mut group: Vec<Entry> = Vec::new();
        let result = (|| -> Result<()> {
            while merger.next_group(&mut group)? {
                group.sort_by_key(|e| std::cmp::Reverse(e.seq));
                if drop_versions && let Some(cut) = group.iter().position(|e| e.seq <= oldest) {
                    group.truncate(cut + 1);
                    if bottom && group.last().is_some_and(|e| e.value.is_none()) {
                        group.pop();
                    }
                }
                if !group.is_empty() {
                    if builder.as_ref().is_some_and(|b| b.approx_size() >= target)
                        && let Some(b) = builder.take()
                    {
                        finish_output(b, &mut finished)?;
                    }
                    if builder.is_none() {
                        let id = self.alloc_id()?;
                        builder = Some(
                            TableBuilder::create(
                                &*self.fs,
                                &self.dir,
                                id,
                                key,
                                self.suite,
                                self.block_size,
                            )?
                            .warming(self.cache.clone()),
                        );
                    }
                    if let Some(b) = builder.as_mut() {
                        for e in &group {
                            b.add(&e.key, e.seq, e.value.as_deref())?;
                        }
                    }
                }
                group.clear();
            }
            if let Some(b) = builder.take() {
                finish_output(b, &mut finished)?;
            }
            self.fs.sync_dir(&self.dir)?;
            Ok(())
        })();
        if let Err(e) = result {
            if let Some(b) = builder.take() {
                finished.push((b.id, 0));
            }
            for (id, _) in finished {
                // Blocks it warmed into the cache stay until the clock evicts them:
                // unreferenced, they go first.
                let _ = self.fs.remove(&self.dir.join(table_name(id)));
            }
            return Err(e);
        }
        let resolve = self.resolver();
        let mut out = Vec::with_capacity(finished.len());
        for &(id, size) in &finished {
            let table = Table::open(
                self.fs.clone(),
                &self.dir,
                id,
                Some(size),
                &resolve,
                self.cache.clone(),
            );
            match table {
                Ok(t) => out.push(Arc::new(t)),
                Err(e) => {
                    for (id, _) in finished {
                        let _ = self.fs.remove(&self.dir.join(table_name(id)));
                    }
                    return Err(e);
                }
            }
        }
        Ok(out)
    }
}

/// Finishes an output table, recording its id even when finishing fails: the caller
/// removes every recorded output after an error (a full disk needs that space back).
fn finish_output(b: TableBuilder, finished: &mut Vec<(u64, u64)>) -> crate::Result<()> {
    let id = b.id;
    let r = b.finish();
    finished.push((id, *r.as_ref().unwrap_or(&0)));
    r.map(|_| ())
}
