//! The one task that writes a connection's frames, for clients and servers.
//!
//! Frames arrive already encoded. Control frames (credit, cancel, ping,
//! pong) go ahead of data frames and never wait for room, so flow control
//! cannot deadlock behind the data it controls. The writer batches every
//! frame that is ready into one buffered write and flushes only when the
//! queues are empty: under load many calls share one syscall.

use std::io;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

/// Data frames queued per connection before senders wait (backpressure).
const DATA_QUEUE: usize = 1024;
const WRITE_BUFFER: usize = 64 * 1024;

/// The sending side of a connection's writer.
#[derive(Clone)]
pub(crate) struct Outbox {
    data: mpsc::Sender<Bytes>,
    control: mpsc::UnboundedSender<Bytes>,
}

/// The receiving side, handed to [`run`].
pub(crate) struct Inbox {
    data: mpsc::Receiver<Bytes>,
    control: mpsc::UnboundedReceiver<Bytes>,
}

pub(crate) fn channel() -> (Outbox, Inbox) {
    let (data, data_rx) = mpsc::channel(DATA_QUEUE);
    let (control, control_rx) = mpsc::unbounded_channel();
    (
        Outbox { data, control },
        Inbox {
            data: data_rx,
            control: control_rx,
        },
    )
}

/// The writer stopped; the connection is going away.
#[derive(Debug)]
pub(crate) struct Closed;

impl Outbox {
    /// Queues a data frame, waiting while the queue is full.
    pub(crate) async fn send(&self, frame: Bytes) -> Result<(), Closed> {
        self.data.send(frame).await.map_err(|_| Closed)
    }

    /// Queues a control frame; never waits.
    pub(crate) fn send_control(&self, frame: Bytes) -> Result<(), Closed> {
        self.control.send(frame).map_err(|_| Closed)
    }
}

/// Writes frames until every sender is gone (clean end) or a write fails.
pub(crate) async fn run<W: AsyncWrite + Unpin>(writer: W, mut inbox: Inbox) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, writer);
    loop {
        let first = tokio::select! {
            biased;
            Some(f) = inbox.control.recv() => f,
            Some(f) = inbox.data.recv() => f,
            else => break,
        };
        out.write_all(&first).await?;
        loop {
            let next = match inbox.control.try_recv() {
                Ok(f) => f,
                Err(_) => match inbox.data.try_recv() {
                    Ok(f) => f,
                    Err(_) => break,
                },
            };
            out.write_all(&next).await?;
        }
        out.flush().await?;
    }
    out.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn control_frames_overtake_queued_data() {
        let (outbox, inbox) = channel();
        outbox.send(Bytes::from_static(b"d1")).await.unwrap();
        outbox.send(Bytes::from_static(b"d2")).await.unwrap();
        outbox.send_control(Bytes::from_static(b"c1")).unwrap();
        drop(outbox);
        let (a, mut b) = tokio::io::duplex(64);
        run(a, inbox).await.unwrap();
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"c1d1d2");
    }
}
