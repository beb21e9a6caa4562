//! Append-only audit log: one JSON line per request, written by a background thread and
//! fsync'd in batches (every 200 ms or 512 lines), never per line. Lines carry who/what/
//! result metadata only — never key material or request bodies.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

/// One audit record.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub time: String,
    pub caller_oid: Option<String>,
    pub caller_app_id: Option<String>,
    pub caller_tid: Option<String>,
    pub client_address: String,
    pub operation_name: String,
    pub vault: Option<String>,
    pub key_id: Option<String>,
    pub result: String,
    pub http_status: u16,
    pub duration_ms: f64,
    pub correlation_id: String,
    pub trusted_service: bool,
}

impl AuditEvent {
    /// The line of a request that just arrived: its time, client address and correlation
    /// id (`x-ms-client-request-id`, or a fresh one), operation `Unknown` until routing
    /// names it. Also returns the connection's peer (set by `platform::Server`).
    pub fn start<B>(req: &http::Request<B>) -> (platform::Peer, AuditEvent) {
        let peer = req
            .extensions()
            .get::<platform::Peer>()
            .copied()
            .expect("platform::Server sets the peer");
        let ev = AuditEvent {
            time: now_rfc3339(),
            client_address: peer.addr.ip().to_string(),
            operation_name: "Unknown".into(),
            correlation_id: req
                .headers()
                .get("x-ms-client-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            ..Default::default()
        };
        (peer, ev)
    }

    /// Completes the line with the answer's status and how long the request took.
    pub fn finish(&mut self, status: http::StatusCode, started: Instant) {
        self.http_status = status.as_u16();
        self.result = if status.is_success() {
            "Success".into()
        } else {
            format!("Failure:{}", status.as_u16())
        };
        self.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    }
}

enum Msg {
    Line(String),
    Flush(mpsc::Sender<()>),
}

/// Handle to the audit writer. Cheap to share behind an `Arc`.
pub struct AuditLog {
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditLog")
    }
}

pub const AUDIT_FILE: &str = "keyvault-audit.jsonl";

impl AuditLog {
    /// Opens `dir/keyvault-audit.jsonl` for appending and starts the writer thread.
    pub fn open(dir: &Path) -> Result<Self, crate::Error> {
        std::fs::create_dir_all(dir)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(AUDIT_FILE))?;
        let (tx, rx) = mpsc::channel::<Msg>();
        let thread = std::thread::Builder::new()
            .name("kv-audit".into())
            .spawn(move || writer_loop(file, rx))?;
        Ok(AuditLog {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues one event (non-blocking).
    pub fn record(&self, ev: &AuditEvent) {
        let line = match serde_json::to_string(ev) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "audit serialization failed");
                return;
            }
        };
        if let Some(tx) = self.tx.lock().as_ref() {
            let _ = tx.send(Msg::Line(line));
        }
    }

    /// Waits until everything queued so far is written and fsync'd.
    pub fn flush(&self) {
        let (done_tx, done_rx) = mpsc::channel();
        let sent = self
            .tx
            .lock()
            .as_ref()
            .map(|tx| tx.send(Msg::Flush(done_tx)).is_ok())
            .unwrap_or(false);
        if sent {
            let _ = done_rx.recv_timeout(Duration::from_secs(10));
        }
    }

    /// Flushes and stops the writer.
    pub fn close(&self) {
        self.tx.lock().take();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.close();
    }
}

fn writer_loop(file: std::fs::File, rx: mpsc::Receiver<Msg>) {
    let mut out = BufWriter::with_capacity(256 * 1024, file);
    let mut pending = 0usize;
    let mut last_sync = Instant::now();
    let sync = |out: &mut BufWriter<std::fs::File>| {
        if let Err(e) = out.flush().and_then(|_| out.get_ref().sync_data()) {
            tracing::error!(error = %e, "audit log write failed");
        }
    };
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Msg::Line(l)) => {
                if out
                    .write_all(l.as_bytes())
                    .and_then(|_| out.write_all(b"\n"))
                    .is_err()
                {
                    tracing::error!("audit log write failed");
                }
                pending += 1;
                if pending >= 512 || last_sync.elapsed() >= Duration::from_millis(200) {
                    sync(&mut out);
                    pending = 0;
                    last_sync = Instant::now();
                }
            }
            Ok(Msg::Flush(done)) => {
                sync(&mut out);
                pending = 0;
                last_sync = Instant::now();
                let _ = done.send(());
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if pending > 0 {
                    sync(&mut out);
                    pending = 0;
                    last_sync = Instant::now();
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                sync(&mut out);
                return;
            }
        }
    }
}

/// RFC 3339 UTC timestamp for "now".
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_appended_and_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        for i in 0..3 {
            log.record(&AuditEvent {
                time: now_rfc3339(),
                operation_name: "KeyUnwrap".into(),
                http_status: 200,
                correlation_id: format!("c{i}"),
                ..Default::default()
            });
        }
        log.flush();
        let text = std::fs::read_to_string(dir.path().join(AUDIT_FILE)).unwrap();
        assert_eq!(text.lines().count(), 3);
        let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(v["operationName"], "KeyUnwrap");
        log.close();
        let log = AuditLog::open(dir.path()).unwrap();
        log.record(&AuditEvent::default());
        log.close();
        let text = std::fs::read_to_string(dir.path().join(AUDIT_FILE)).unwrap();
        assert_eq!(text.lines().count(), 4);
    }
}
