//! A connection whose writes make no progress is closed. A client that stops reading a long
//! answer leaves the ingress's writes pending forever (nothing times out a write in hyper), and
//! each such connection holds its socket buffers and a connection slot; after `limit` without
//! a byte written the write fails with `TimedOut`, which ends the connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

pub struct WriteStall<T> {
    inner: T,
    limit: Duration,
    /// Armed when a write first finds the socket full; disarmed by any progress.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteStall<T> {
    pub fn new(inner: T, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            deadline: None,
        }
    }

    /// The outcome of a write-side poll, with the stall clock kept: progress disarms it, a
    /// pending poll arms it (once) and fails the write when it runs out.
    fn watch<R>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if poll.is_ready() {
            self.deadline = None;
            return poll;
        }
        let limit = self.limit;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + limit)));
        ready!(deadline.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the client read nothing for {limit:?}"),
        )))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteStall<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteStall<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test]
    async fn a_write_the_peer_never_reads_fails_after_the_limit() {
        // A pipe with room for 16 bytes, whose other end nobody reads.
        let (near, _far) = tokio::io::duplex(16);
        let limit = Duration::from_millis(200);
        let mut stalled = WriteStall::new(near, limit);
        stalled.write_all(&[0; 16]).await.expect("fits");
        let started = Instant::now();
        let error = stalled.write_all(&[0; 1]).await.expect_err("stalls");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= limit);
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_reading_is_never_cut_off() {
        let (near, mut far) = tokio::io::duplex(16);
        // Far longer than the reader's pauses, however loaded the machine.
        let mut slow = WriteStall::new(near, Duration::from_secs(5));
        let reader = tokio::spawn(async move {
            let mut byte = [0; 1];
            for _ in 0..64 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                tokio::io::AsyncReadExt::read_exact(&mut far, &mut byte)
                    .await
                    .expect("a byte");
            }
        });
        slow.write_all(&[0; 64])
            .await
            .expect("written as it is read");
        reader.await.expect("the reader finished");
    }
}
