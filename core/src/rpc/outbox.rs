//! Writing a connection's frames: a combining writer shared by clients and
//! servers.
//!
//! A sender whose connection is idle writes its frame straight to the
//! socket with a non-blocking `try_write_vectored` (no task hop, one
//! syscall). When the socket is busy (a partial write, or `WouldBlock`) the
//! rest is queued and the connection's flusher task drains the queue,
//! batching every queued frame into vectored writes. Writes happen under a
//! short lock and never across an `.await`, so a sender that is cancelled
//! can never leave half a frame on the wire.
//!
//! Control frames (credit, cancel, ping, pong) go ahead of queued data and
//! never wait for room, so flow control cannot deadlock behind the data it
//! controls. A server "corks" the outbox while it handles the frames of one
//! read and uncorks after the last, so answers to a pipelined batch leave
//! in one write, as in a hand-written echo server.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Buf, Bytes};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

/// Data bytes queued per connection before `send` waits (backpressure). A
/// single frame larger than this is still accepted into an empty queue.
const QUEUE_LIMIT_BYTES: usize = 8 * 1024 * 1024;
/// Frames per vectored write.
const MAX_IOVECS: usize = 64;

/// The writer stopped; the connection is going away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Closed(pub(crate) String);

/// Why [`Outbox::try_send`] did not queue a frame.
#[derive(Debug)]
pub(crate) enum TrySendError {
    /// The queue is full; here is the frame back.
    Full(Bytes),
    Closed,
}

/// The write side of one connection. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    socket: OwnedWriteHalf,
    state: Mutex<State>,
    /// Wakes the flusher when it has work.
    work: Notify,
    /// Wakes senders waiting for queue room.
    room: Notify,
}

#[derive(Default)]
struct State {
    control: VecDeque<Bytes>,
    data: VecDeque<Bytes>,
    data_bytes: usize,
    /// The flusher owns the socket until the queue is empty.
    flushing: bool,
    /// The front data frame is partly on the wire: nothing may go before
    /// its rest (a control frame overtaking it would land inside it).
    data_started: bool,
    /// Hold frames: the server is answering a batch.
    corked: bool,
    closed: Option<String>,
}

impl State {
    fn is_empty(&self) -> bool {
        self.control.is_empty() && self.data.is_empty()
    }

    /// Writes as much of the queue as the socket takes now. `Ok(true)`: all
    /// of it.
    fn write_now(&mut self, socket: &OwnedWriteHalf) -> io::Result<bool> {
        while !self.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut n = 0;
            for frame in self.in_order().take(MAX_IOVECS) {
                slices[n] = IoSlice::new(frame);
                n += 1;
            }
            match socket.try_write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => self.consume(written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// The queued frames in the order they go on the wire: the rest of a
    /// data frame already started, then control frames, then data.
    fn in_order(&self) -> impl Iterator<Item = &Bytes> {
        let started = self.data.iter().take(usize::from(self.data_started));
        let waiting = self.data.iter().skip(usize::from(self.data_started));
        started.chain(self.control.iter()).chain(waiting)
    }

    /// Drops `written` bytes off the front of the queue, in [`Self::in_order`].
    fn consume(&mut self, mut written: usize) {
        while written > 0 {
            let is_data = self.data_started || self.control.is_empty();
            let queue = match is_data {
                true => &mut self.data,
                false => &mut self.control,
            };
            let front = queue.front_mut().expect("wrote no more than was queued");
            let take = written.min(front.len());
            front.advance(take);
            written -= take;
            let done = front.is_empty();
            if done {
                queue.pop_front();
            }
            if is_data {
                self.data_bytes -= take;
                self.data_started = !done;
            }
        }
    }
}

impl Outbox {
    /// Wraps a connection's write half. Run [`Outbox::flusher`] in a task
    /// for as long as the connection lives.
    pub(crate) fn new(socket: OwnedWriteHalf) -> Outbox {
        Outbox {
            inner: Arc::new(Inner {
                socket,
                state: Mutex::new(State::default()),
                work: Notify::new(),
                room: Notify::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// After queueing: write now if the socket is ours and the sender asked
    /// for it (`direct`), else leave it to the flusher. The flusher runs after
    /// the senders that are ready now, so their frames share one write.
    fn kick(&self, state: &mut State, direct: bool) -> Result<(), Closed> {
        if state.flushing || state.corked {
            return Ok(());
        }
        if !direct {
            state.flushing = true;
            self.inner.work.notify_one();
            return Ok(());
        }
        match state.write_now(&self.inner.socket) {
            Ok(true) => Ok(()),
            Ok(false) => {
                state.flushing = true;
                self.inner.work.notify_one();
                Ok(())
            }
            Err(e) => Err(self.fail(state, format!("writing to the peer failed: {e}"))),
        }
    }

    fn fail(&self, state: &mut State, reason: String) -> Closed {
        state.closed.get_or_insert(reason.clone());
        state.control.clear();
        state.data.clear();
        state.data_bytes = 0;
        state.data_started = false;
        self.inner.room.notify_waiters();
        self.inner.work.notify_one();
        Closed(reason)
    }

    fn push_data(&self, state: &mut State, frame: Bytes, direct: bool) -> Result<(), Closed> {
        state.data_bytes += frame.len();
        state.data.push_back(frame);
        self.kick(state, direct)
    }

    fn has_room(state: &State, len: usize) -> bool {
        state.data_bytes == 0 || state.data_bytes + len <= QUEUE_LIMIT_BYTES
    }

    /// Sends a data frame, waiting while the queue is full. `direct`: write
    /// it from this task if the socket is free (best when this is the only
    /// frame in flight); otherwise the flusher batches it with others.
    pub(crate) async fn send(&self, frame: Bytes, direct: bool) -> Result<(), Closed> {
        loop {
            let room = self.inner.room.notified();
            tokio::pin!(room);
            {
                let mut state = self.lock();
                if let Some(reason) = &state.closed {
                    return Err(Closed(reason.clone()));
                }
                if Self::has_room(&state, frame.len()) {
                    return self.push_data(&mut state, frame, direct);
                }
                // Register before unlocking so a wake-up cannot slip by.
                room.as_mut().enable();
            }
            room.await;
        }
    }

    /// Sends a data frame if there is room now; gives it back otherwise.
    pub(crate) fn try_send(&self, frame: Bytes) -> Result<(), TrySendError> {
        let mut state = self.lock();
        if state.closed.is_some() {
            return Err(TrySendError::Closed);
        }
        if !Self::has_room(&state, frame.len()) {
            return Err(TrySendError::Full(frame));
        }
        self.push_data(&mut state, frame, true)
            .map_err(|_| TrySendError::Closed)
    }

    /// Sends a control frame ahead of queued data; never waits.
    pub(crate) fn send_control(&self, frame: Bytes) -> Result<(), Closed> {
        let mut state = self.lock();
        if let Some(reason) = &state.closed {
            return Err(Closed(reason.clone()));
        }
        state.control.push_back(frame);
        self.kick(&mut state, true)
    }

    /// Holds frames until [`Outbox::uncork`].
    pub(crate) fn cork(&self) {
        self.lock().corked = true;
    }

    /// Sends everything held since [`Outbox::cork`].
    pub(crate) fn uncork(&self) -> Result<(), Closed> {
        let mut state = self.lock();
        state.corked = false;
        if state.closed.is_some() || state.is_empty() {
            return Ok(());
        }
        self.kick(&mut state, true)
    }

    /// Drains the queue whenever senders leave it to us; returns when the
    /// connection fails. Spawn it once per connection.
    pub(crate) async fn flusher(self) -> Closed {
        loop {
            self.inner.work.notified().await;
            loop {
                {
                    let mut state = self.lock();
                    if let Some(reason) = &state.closed {
                        return Closed(reason.clone());
                    }
                    if !state.flushing {
                        break;
                    }
                    let before = state.data_bytes;
                    match state.write_now(&self.inner.socket) {
                        Ok(true) => state.flushing = false,
                        Ok(false) => {}
                        Err(e) => {
                            return self
                                .fail(&mut state, format!("writing to the peer failed: {e}"))
                        }
                    }
                    if state.data_bytes < before {
                        self.inner.room.notify_waiters();
                    }
                    if !state.flushing {
                        break;
                    }
                }
                if let Err(e) = self.inner.socket.writable().await {
                    let mut state = self.lock();
                    return self.fail(&mut state, format!("writing to the peer failed: {e}"));
                }
            }
        }
    }
}

/// Whether `buf` (a connection's read buffer) holds at least one whole
/// length-prefixed frame, so the reader will have more to do at once.
pub(crate) fn has_whole_frame(buf: &[u8]) -> bool {
    if buf.len() < super::frame::LEN_PREFIX {
        return false;
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    buf.len() >= super::frame::LEN_PREFIX + len
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    /// An outbox on one end of a loopback connection, the other end, and
    /// the outbox side's read half (kept so the socket stays whole).
    async fn pair() -> (Outbox, TcpStream, tokio::net::tcp::OwnedReadHalf) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (read, write) = client.into_split();
        (Outbox::new(write), server, read)
    }

    #[tokio::test]
    async fn frames_arrive_whole_and_in_order_even_when_the_socket_is_full() {
        let (outbox, mut peer, _read) = pair().await;
        tokio::spawn(outbox.clone().flusher());
        // Far more than the socket buffers hold, so most of it is queued.
        let frames: Vec<Bytes> = (0..2000u32)
            .map(|i| Bytes::from(vec![(i % 251) as u8; 1000 + (i as usize % 7)]))
            .collect();
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
        let sender = {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                for f in frames {
                    let direct = i_direct(&f);
                    outbox.send(f, direct).await.unwrap();
                }
            })
        };
        let mut got = vec![0u8; expected.len()];
        peer.read_exact(&mut got).await.unwrap();
        sender.await.unwrap();
        assert!(got == expected, "bytes arrived out of order or torn");
    }

    #[tokio::test]
    async fn control_frames_overtake_queued_data_and_cork_holds_frames() {
        let (outbox, mut peer, _read) = pair().await;
        tokio::spawn(outbox.clone().flusher());
        outbox.cork();
        outbox.send(Bytes::from_static(b"d1"), true).await.unwrap();
        outbox.send(Bytes::from_static(b"d2"), false).await.unwrap();
        outbox.send_control(Bytes::from_static(b"c1")).unwrap();
        outbox.uncork().unwrap();
        let mut got = [0u8; 6];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"c1d1d2");
    }

    #[test]
    fn a_control_frame_never_lands_inside_a_data_frame_partly_written() {
        let mut state = State::default();
        state.data.push_back(Bytes::from_static(b"data-one"));
        state.data.push_back(Bytes::from_static(b"data-two"));
        state.data_bytes = 16;
        state.control.push_back(Bytes::from_static(b"c1"));
        // Control first at a frame boundary...
        let order = |s: &State| s.in_order().map(|f| f.to_vec()).collect::<Vec<_>>();
        assert_eq!(order(&state)[0], b"c1");
        // ... but once a data frame is partly written, its rest goes first.
        state.consume(2 + 3);
        assert!(state.data_started);
        state.control.push_back(Bytes::from_static(b"c2"));
        assert_eq!(
            order(&state),
            [b"a-one".to_vec(), b"c2".to_vec(), b"data-two".to_vec()]
        );
        state.consume(5);
        assert!(!state.data_started);
        assert_eq!(order(&state), [b"c2".to_vec(), b"data-two".to_vec()]);
        state.consume(2 + 8);
        assert!(state.is_empty() && state.data_bytes == 0);
    }

    /// Mixes direct and batched sends.
    fn i_direct(f: &Bytes) -> bool {
        f.len().is_multiple_of(2)
    }

    #[test]
    fn whole_frame_detection() {
        assert!(!has_whole_frame(&[0, 0, 0]));
        assert!(has_whole_frame(&[0, 0, 0, 0]));
        assert!(!has_whole_frame(&[0, 0, 0, 2, 9]));
        assert!(has_whole_frame(&[0, 0, 0, 2, 9, 9, 1]));
    }
}
