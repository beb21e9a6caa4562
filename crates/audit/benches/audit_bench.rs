//! Append and read throughput of the audit log on the local disk. Run in release:
//! `cargo bench -p audit --bench audit_bench` (env `AUDIT_BENCH_N` = appends per row,
//! default 4000; `AUDIT_BENCH_DIR` = where to put the logs, default the system temp dir).

use std::sync::Arc;
use std::time::Instant;

use audit::{AuditEvent, AuditLog, EventKind, Outcome, ReadFilter};
use zeroize::Zeroizing;

const KEY: [u8; 32] = [7; 32];

fn event(i: usize) -> AuditEvent {
    AuditEvent::now(
        EventKind::AuthFailed,
        Outcome::Failure,
        format!("bad password #{i}"),
    )
    .cluster("cluster-7")
    .principal("alice@example")
    .remote("10.1.2.3:51234")
}

fn main() {
    let n: usize = std::env::var("AUDIT_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let base = std::env::var_os("AUDIT_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);

    println!("| threads | appends | appends/s | mean µs/append | fdatasyncs | appends/sync |");
    println!("|--:|--:|--:|--:|--:|--:|");
    let mut last_dir = None;
    for threads in [1usize, 4, 16] {
        let tmp = tempfile::tempdir_in(&base).expect("temp dir");
        let log = Arc::new(AuditLog::open(tmp.path(), Zeroizing::new(KEY)).expect("open"));
        let per = n / threads;
        let start = Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    for i in 0..per {
                        log.append(&event(t * per + i)).expect("append");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("thread");
        }
        let secs = start.elapsed().as_secs_f64();
        let total = per * threads;
        let syncs = log.sync_count();
        println!(
            "| {threads} | {total} | {:.0} | {:.1} | {syncs} | {:.1} |",
            total as f64 / secs,
            secs * 1e6 * threads as f64 / total as f64,
            total as f64 / syncs.max(1) as f64
        );
        last_dir = Some(tmp);
    }

    if let Some(tmp) = last_dir {
        let start = Instant::now();
        let report = AuditLog::verify(tmp.path(), &KEY, None).expect("verify");
        let secs = start.elapsed().as_secs_f64();
        println!();
        println!("| operation | records | records/s |");
        println!("|--|--:|--:|");
        println!(
            "| verify | {} | {:.0} |",
            report.records,
            report.records as f64 / secs
        );
        let start = Instant::now();
        let got = AuditLog::read(
            tmp.path(),
            &KEY,
            &ReadFilter {
                tail: Some(100),
                ..ReadFilter::default()
            },
        )
        .expect("read");
        let secs = start.elapsed().as_secs_f64();
        println!(
            "| read --tail 100 (walks all) | {} | {:.0} |",
            report.records,
            report.records as f64 / secs
        );
        assert_eq!(got.len(), 100.min(report.records as usize));
    }
}
