//! A TCP proxy in front of confab that cuts one stream mid-answer, as a phone changing networks
//! or a proxy timing out does: the first request through it for a streaming route without a
//! `Last-Event-ID` has its connection closed once a given number of response bytes got through.
//! Everything else passes untouched, so the browser's reconnect goes through and can resume.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct CutProxy {
    /// Where clients connect: `http://127.0.0.1:<port>`.
    pub url: String,
    cut: Arc<AtomicBool>,
    server: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    /// Proxy to `upstream`, cutting the first fresh stream after `after_bytes` of its response.
    pub async fn start(upstream: SocketAddr, after_bytes: usize) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let cut = Arc::new(AtomicBool::new(false));
        let done = cut.clone();
        let server = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let done = done.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        relay(client, server, after_bytes, done).await;
                    }
                });
            }
        });
        CutProxy { url, cut, server }
    }

    /// Whether it has cut a stream yet.
    pub fn has_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Copy both ways until either side closes; a connection that carries the first fresh stream
/// is dropped (both sockets) after `after_bytes` of response.
async fn relay(
    mut client: TcpStream,
    mut server: TcpStream,
    after_bytes: usize,
    done: Arc<AtomicBool>,
) {
    let (mut from_client, mut to_client) = (vec![0u8; 16384], vec![0u8; 16384]);
    let mut doomed = false;
    let mut sent_back = 0usize;
    loop {
        tokio::select! {
            read = client.read(&mut from_client) => {
                let Ok(n) = read else { return };
                if n == 0 { return }
                let head = String::from_utf8_lossy(&from_client[..n]).to_ascii_lowercase();
                if head.contains("/streaming?") && !head.contains("last-event-id:")
                    && !done.load(Ordering::SeqCst)
                {
                    doomed = true;
                    sent_back = 0;
                }
                if server.write_all(&from_client[..n]).await.is_err() { return }
            }
            read = server.read(&mut to_client) => {
                let Ok(n) = read else { return };
                if n == 0 { return }
                if client.write_all(&to_client[..n]).await.is_err() { return }
                sent_back += n;
                if doomed && sent_back >= after_bytes && !done.swap(true, Ordering::SeqCst) {
                    return;
                }
            }
        }
    }
}
