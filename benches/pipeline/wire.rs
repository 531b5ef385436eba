//! Counting proxies: a TCP relay between one confab process and Postgres or RabbitMQ that reads
//! the protocol going through it, so the harness counts what a turn costs on the wire instead
//! of anyone estimating it. Postgres: statements (`Query` and `Execute` messages) and round trips
//! (each burst of client messages sent after the server last spoke; counted on Postgres
//! connections only, since the figures sum each process's two proxies). RabbitMQ: `basic.publish`
//! sent and `basic.deliver` received.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Postgres,
    Amqp,
}

/// What went through a proxy so far.
#[derive(Debug, Default)]
pub struct Counters {
    pub statements: AtomicU64,
    pub round_trips: AtomicU64,
    pub publishes: AtomicU64,
    pub deliveries: AtomicU64,
}

/// The counters at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub statements: u64,
    pub round_trips: u64,
    pub publishes: u64,
    pub deliveries: u64,
}

impl Counts {
    pub fn since(self, before: Counts) -> Counts {
        Counts {
            statements: self.statements - before.statements,
            round_trips: self.round_trips - before.round_trips,
            publishes: self.publishes - before.publishes,
            deliveries: self.deliveries - before.deliveries,
        }
    }
}

pub struct Proxy {
    pub addr: SocketAddr,
    counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Relay connections on a free local port to `upstream`, counting `protocol`.
    pub async fn start(upstream: SocketAddr, protocol: Protocol) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a proxy");
        let addr = listener.local_addr().expect("its address");
        let counters = Arc::new(Counters::default());
        let shared = counters.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counters = shared.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        relay(client, server, protocol, counters).await;
                    }
                });
            }
        });
        Proxy {
            addr,
            counters,
            task,
        }
    }

    pub fn counts(&self) -> Counts {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Counts {
            statements: load(&self.counters.statements),
            round_trips: load(&self.counters.round_trips),
            publishes: load(&self.counters.publishes),
            deliveries: load(&self.counters.deliveries),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(client: TcpStream, server: TcpStream, protocol: Protocol, counters: Arc<Counters>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let server_spoke = Arc::new(AtomicBool::new(true));
    let upstream = {
        let (counters, server_spoke) = (counters.clone(), server_spoke.clone());
        async move {
            let mut parser = Parser::new(protocol, Direction::FromClient);
            let mut buffer = vec![0u8; 64 * 1024];
            while let Ok(n @ 1..) = client_read.read(&mut buffer).await {
                // Round trips are a Postgres figure: AMQP traffic is asynchronous (publishes,
                // deliveries and acks interleave), so its bursts measure nothing.
                if server_spoke.swap(false, Ordering::Relaxed) && protocol == Protocol::Postgres {
                    counters.round_trips.fetch_add(1, Ordering::Relaxed);
                }
                parser.feed(&buffer[..n], &counters);
                if server_write.write_all(&buffer[..n]).await.is_err() {
                    break;
                }
            }
            let _ = server_write.shutdown().await;
        }
    };
    let downstream = async move {
        let mut parser = Parser::new(protocol, Direction::FromServer);
        let mut buffer = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = server_read.read(&mut buffer).await {
            server_spoke.store(true, Ordering::Relaxed);
            parser.feed(&buffer[..n], &counters);
            if client_write.write_all(&buffer[..n]).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::join!(upstream, downstream);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    FromClient,
    FromServer,
}

/// Splits one direction of a connection into its protocol's messages, whatever the reads'
/// boundaries, and counts those that matter.
struct Parser {
    protocol: Protocol,
    direction: Direction,
    pending: Vec<u8>,
    /// Postgres: before the startup message, client messages carry no type byte. AMQP: the
    /// client's protocol header comes first.
    started: bool,
}

impl Parser {
    fn new(protocol: Protocol, direction: Direction) -> Parser {
        Parser {
            protocol,
            direction,
            pending: Vec::new(),
            started: direction == Direction::FromServer,
        }
    }

    fn feed(&mut self, bytes: &[u8], counters: &Counters) {
        // Nothing the Postgres server sends is counted.
        if self.protocol == Protocol::Postgres && self.direction == Direction::FromServer {
            return;
        }
        let mut pending = std::mem::take(&mut self.pending);
        pending.extend_from_slice(bytes);
        let mut at = 0;
        while let Some(length) = self.next_message(&pending[at..], counters) {
            at += length;
        }
        pending.drain(..at);
        self.pending = pending;
    }

    /// The length of the complete message at the start of `bytes`, counted; `None` until it
    /// has all arrived.
    fn next_message(&mut self, bytes: &[u8], counters: &Counters) -> Option<usize> {
        match self.protocol {
            Protocol::Postgres => self.postgres(bytes, counters),
            Protocol::Amqp => self.amqp(bytes, counters),
        }
    }

    fn postgres(&mut self, bytes: &[u8], counters: &Counters) -> Option<usize> {
        let be32 = |at: usize| -> Option<usize> {
            bytes
                .get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        };
        if !self.started {
            // SSLRequest and GSSENCRequest (answered by one byte) come before the startup.
            let length = be32(0)?;
            let code = be32(4)?;
            if bytes.len() < length {
                return None;
            }
            self.started = !matches!(code, 80_877_103 | 80_877_104);
            return Some(length);
        }
        let length = 1 + be32(1)?;
        if bytes.len() < length {
            return None;
        }
        if matches!(bytes[0], b'Q' | b'E') {
            counters.statements.fetch_add(1, Ordering::Relaxed);
        }
        Some(length)
    }

    fn amqp(&mut self, bytes: &[u8], counters: &Counters) -> Option<usize> {
        if !self.started {
            // "AMQP" 0 0 9 1
            if bytes.len() < 8 {
                return None;
            }
            self.started = true;
            return Some(8);
        }
        let size = bytes
            .get(3..7)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)?;
        let length = 7 + size + 1;
        if bytes.len() < length {
            return None;
        }
        // A method frame: class and method ids open its payload.
        if bytes[0] == 1 && size >= 4 {
            let class = u16::from_be_bytes([bytes[7], bytes[8]]);
            let method = u16::from_be_bytes([bytes[9], bytes[10]]);
            match (self.direction, class, method) {
                (Direction::FromClient, 60, 40) => {
                    counters.publishes.fetch_add(1, Ordering::Relaxed);
                }
                (Direction::FromServer, 60, 60) => {
                    counters.deliveries.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
        Some(length)
    }
}
