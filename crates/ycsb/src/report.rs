//! Markdown tables: the load phase, one table per target, and the
//! Strongroom/PostgreSQL ratio per mix and client count.

use std::fmt::Write as _;
use std::time::Duration;

use crate::runner::TargetReport;
use crate::stats::{Op, Recorder};

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn latency_cells(r: &Recorder, op: Op) -> String {
    match r.summary(op) {
        Some(s) => format!("{} | {}", ms(s.p50), ms(s.p99)),
        None => "– | –".to_string(),
    }
}

/// The load phase of every target.
pub fn load_table(reports: &[&TargetReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| target | documents | time (s) | docs/s | batch p50 (ms) | batch p99 (ms) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for r in reports {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.0} | {} |",
            r.name,
            r.load.records,
            r.load.elapsed.as_secs_f64(),
            r.load.docs_per_sec(),
            latency_cells(&r.load.recorder, Op::InsertBatch)
        );
    }
    out
}

/// Throughput and latency of every run of one target.
pub fn target_table(report: &TargetReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "**{}** — {}\n", report.name, report.description);
    let _ = writeln!(
        out,
        "| mix | clients | ops/s | read p50 | read p99 | update p50 | update p99 | range p50 | range p99 | errors |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for run in &report.runs {
        let r = &run.recorder;
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {} | {} | {} |",
            run.mix.label(),
            run.clients,
            run.ops_per_sec(),
            latency_cells(r, Op::Read),
            latency_cells(r, Op::Update),
            latency_cells(r, Op::Range),
            r.total_errors()
        );
    }
    let _ = writeln!(out, "\nLatencies in milliseconds.");
    out
}

/// The latency distribution behind [`target_table`]: mean, p90, p99.9 and max of every
/// operation type of every run, in microseconds (a single client's throughput is the
/// inverse of its mean latency, which a fat tail moves while the p50 stays put).
pub fn distribution_table(report: &TargetReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "**{}** — latency distribution\n", report.name);
    let _ = writeln!(
        out,
        "| mix | clients | op | count | mean | p50 | p90 | p99 | p99.9 | max |"
    );
    let _ = writeln!(out, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for run in &report.runs {
        for op in [Op::Read, Op::Update, Op::Range] {
            let Some(l) = run.recorder.summary(op) else {
                continue;
            };
            let us = |d: Duration| d.as_micros();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                run.mix.label(),
                run.clients,
                op.label(),
                l.count,
                us(l.mean),
                us(l.p50),
                us(l.p90),
                us(l.p99),
                us(l.p999),
                us(l.max)
            );
        }
    }
    let _ = writeln!(out, "\nLatencies in microseconds.");
    out
}

/// Strongroom's throughput over PostgreSQL's for every (mix, clients) both ran.
pub fn ratio_table(strongroom: &TargetReport, postgres: &TargetReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| mix | clients | {} ops/s | {} ops/s | ratio | target 1.0x |",
        strongroom.name, postgres.name
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---|");
    let load_ratio = strongroom.load.docs_per_sec() / postgres.load.docs_per_sec().max(1e-9);
    let _ = writeln!(
        out,
        "| load (docs/s) | – | {:.0} | {:.0} | {load_ratio:.2}x | {} |",
        strongroom.load.docs_per_sec(),
        postgres.load.docs_per_sec(),
        verdict(load_ratio)
    );
    for s in &strongroom.runs {
        let Some(p) = postgres.run(s.mix, s.clients) else {
            continue;
        };
        let ratio = s.ops_per_sec() / p.ops_per_sec().max(1e-9);
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.0} | {ratio:.2}x | {} |",
            s.mix.label(),
            s.clients,
            s.ops_per_sec(),
            p.ops_per_sec(),
            verdict(ratio)
        );
    }
    out
}

fn verdict(ratio: f64) -> &'static str {
    if ratio >= 1.0 { "met" } else { "missed" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{LoadResult, RunResult};
    use crate::workload::Mix;

    fn report(name: &str, ops: u64) -> TargetReport {
        let mut recorder = Recorder::default();
        for _ in 0..ops {
            recorder.record(Op::Read, Duration::from_micros(250));
        }
        let mut load = Recorder::default();
        load.record(Op::InsertBatch, Duration::from_millis(3));
        TargetReport {
            name: name.into(),
            description: "test".into(),
            load: LoadResult {
                records: 1000,
                elapsed: Duration::from_secs(1),
                recorder: load,
            },
            runs: vec![RunResult {
                mix: Mix::B,
                clients: 8,
                measured: Duration::from_secs(1),
                recorder,
                first_error: None,
            }],
        }
    }

    #[test]
    fn ratio_table_divides_throughputs_and_judges_the_target() {
        let sr = report("Strongroom", 300);
        let pg = report("PostgreSQL", 200);
        let t = ratio_table(&sr, &pg);
        assert!(
            t.contains("| B 95/5 read/update | 8 | 300 | 200 | 1.50x | met |"),
            "{t}"
        );
        assert!(
            t.contains("| load (docs/s) | – | 1000 | 1000 | 1.00x | met |"),
            "{t}"
        );
        let t = ratio_table(&pg, &sr);
        assert!(t.contains("0.67x | missed"), "{t}");
    }

    #[test]
    fn target_table_shows_percentiles_in_milliseconds() {
        let t = target_table(&report("Strongroom", 10));
        assert!(
            t.contains("| B 95/5 read/update | 8 | 10 | 0.25 | 0.25 | – | – | – | – | 0 |"),
            "{t}"
        );
        assert!(load_table(&[&report("x", 1)]).contains("| x | 1000 | 1.0 | 1000 | 3.00 | 3.00 |"));
    }

    #[test]
    fn distribution_table_lists_each_operation_that_ran() {
        let t = distribution_table(&report("Strongroom", 10));
        assert!(
            t.contains(
                "| B 95/5 read/update | 8 | read | 10 | 250 | 250 | 250 | 250 | 250 | 250 |"
            ),
            "{t}"
        );
        assert!(!t.contains("| update |"), "{t}");
    }
}
