//! The node's stdout: one task writes every event, so answers and notices (sent from the
//! backup thread, or a job's progress) never interleave mid-line.

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use cluster::protocol::Event;

pub(crate) type Writer = tokio::task::JoinHandle<std::io::Result<()>>;

/// The sender every part of the process emits events through, and the task writing them.
pub(crate) fn spawn_writer() -> (mpsc::UnboundedSender<Event>, Writer) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let task = tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        while let Some(event) = rx.recv().await {
            out.write_all(event.to_line().as_bytes()).await?;
            out.flush().await?;
        }
        Ok(())
    });
    (tx, task)
}

/// Drops the sender and lets the writer flush what is queued — bounded: a stuck stdout
/// must not keep an orphaned process alive.
pub(crate) async fn close(events: mpsc::UnboundedSender<Event>, writer: Writer) {
    drop(events);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await;
}
