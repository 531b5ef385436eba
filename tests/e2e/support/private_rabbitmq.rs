//! A RabbitMQ node of a test's own, on free ports, so the test may stop and start it without
//! disturbing the machine's shared broker or the tests using it. Run as the `rabbitmq` user (the
//! Debian package's), from a directory that holds its configuration, database and logs; the
//! durable queues in that database survive a stop and start. Killed and removed when dropped.
//! Several such nodes sharing an Erlang cookie join into a cluster of the test's own
//! ([`PrivateRabbitMq::cluster`]), whose nodes a test may kill one at a time.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct PrivateRabbitMq {
    dir: PathBuf,
    node: String,
    amqp_port: u16,
    dist_port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("its address")
        .port()
}

/// Whether a process with this id still exists (a zombie counts as gone: it runs nothing).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

impl PrivateRabbitMq {
    /// Boot a fresh node and wait until it takes AMQP connections.
    pub async fn start() -> PrivateRabbitMq {
        Self::start_with_cookie(&uuid::Uuid::new_v4().simple().to_string()).await
    }

    /// Boot `size` fresh nodes and join them into one cluster, the first node's.
    pub async fn cluster(size: usize) -> Vec<PrivateRabbitMq> {
        let cookie = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
        let mut nodes = Vec::new();
        for _ in 0..size {
            nodes.push(Self::start_with_cookie(&cookie).await);
        }
        for node in &nodes[1..] {
            node.ctl(&["stop_app"]);
            node.ctl(&["join_cluster", &nodes[0].node]);
            node.ctl(&["start_app"]);
        }
        let members = nodes[0].ctl(&["cluster_status", "--formatter", "json"]);
        for node in &nodes {
            assert!(
                members.contains(&node.node),
                "{} did not join: {members}",
                node.node
            );
        }
        nodes
    }

    /// The node's name (`name@localhost`).
    pub fn name(&self) -> &str {
        &self.node
    }

    /// `rabbitmqctl` against this node, as its user with its cookie; its output.
    pub fn ctl(&self, args: &[&str]) -> String {
        self.cli("rabbitmqctl", args)
    }

    /// `rabbitmq-streams` (a stream's replicas) against this node; its output.
    pub fn streams(&self, args: &[&str]) -> String {
        self.cli("rabbitmq-streams", args)
    }

    fn cli(&self, tool: &str, args: &[&str]) -> String {
        let output = Command::new("runuser")
            .args(["-u", "rabbitmq", "--", "env"])
            .arg(format!("HOME={}", self.dir.display()))
            .arg(format!("/usr/lib/rabbitmq/bin/{tool}"))
            .args(["-n", &self.node])
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("runuser {tool}: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{tool} {args:?} on {}: {stdout}{}",
            self.node,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// Kill the node at once (SIGKILL: no goodbye to clients or peers) and wait until it is gone.
    pub async fn kill(&self) {
        let pid = self.pid().expect("the node's pid file");
        let status = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -KILL {pid}");
        while alive(pid) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn start_with_cookie(cookie: &str) -> PrivateRabbitMq {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("confab-rmq-{id}"));
        let node = PrivateRabbitMq {
            node: format!("confab-{}@localhost", &id[..8]),
            amqp_port: free_port(),
            dist_port: free_port(),
            dir,
        };
        std::fs::create_dir_all(node.dir.join("mnesia")).unwrap();
        std::fs::create_dir_all(node.dir.join("log")).unwrap();
        std::fs::write(
            node.dir.join("rabbitmq.conf"),
            format!(
                "listeners.tcp.default = 127.0.0.1:{}\nloopback_users = none\n",
                node.amqp_port
            ),
        )
        .unwrap();
        std::fs::write(node.dir.join("enabled_plugins"), "[].\n").unwrap();
        // The Erlang cookie in the node's HOME: nodes (and rabbitmqctl) sharing it may talk.
        let cookie_file = node.dir.join(".erlang.cookie");
        std::fs::write(&cookie_file, cookie).unwrap();
        let chown = Command::new("chown")
            .args(["-R", "rabbitmq"])
            .arg(&node.dir)
            .status()
            .unwrap();
        assert!(chown.success(), "chown the node's directory to rabbitmq");
        let private = Command::new("chmod")
            .arg("400")
            .arg(&cookie_file)
            .status()
            .unwrap();
        assert!(private.success(), "the cookie must be private to its owner");
        node.up().await;
        node
    }

    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.amqp_port)
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("pid")
    }

    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Start the node (again, with the same database) and wait until it takes AMQP connections.
    pub async fn up(&self) {
        let _ = std::fs::remove_file(self.pid_file());
        let d = |sub: &str| self.dir.join(sub).to_string_lossy().into_owned();
        let status = Command::new("runuser")
            .args(["-u", "rabbitmq", "--", "env"])
            .arg(format!("HOME={}", self.dir.display()))
            .arg(format!("RABBITMQ_NODENAME={}", self.node))
            .arg(format!("RABBITMQ_CONFIG_FILE={}", d("rabbitmq.conf")))
            .arg(format!("RABBITMQ_MNESIA_BASE={}", d("mnesia")))
            .arg(format!("RABBITMQ_LOG_BASE={}", d("log")))
            .arg(format!(
                "RABBITMQ_ENABLED_PLUGINS_FILE={}",
                d("enabled_plugins")
            ))
            .arg(format!("RABBITMQ_DIST_PORT={}", self.dist_port))
            .arg(format!("RABBITMQ_PID_FILE={}", d("pid")))
            .args(["/usr/lib/rabbitmq/bin/rabbitmq-server", "-detached"])
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("runuser rabbitmq-server");
        assert!(status.success(), "rabbitmq-server -detached failed");
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            // A booting node may take the TCP connection and not answer the handshake yet.
            let url = self.amqp_url();
            let connecting = lapin::Connection::connect(&url, Default::default());
            let connected = tokio::time::timeout(Duration::from_secs(5), connecting).await;
            if let Ok(Ok(connection)) = connected {
                let _ = connection.close(200, "ready".into()).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "the private RabbitMQ node did not come up; see {}",
            self.dir.join("log").display()
        );
    }

    /// Stop the node as an operator does (SIGTERM: it closes its connections and shuts down
    /// cleanly) and wait until it is gone.
    pub async fn stop(&self) {
        let pid = self.pid().expect("the node's pid file");
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM {pid}");
        let asked = Instant::now();
        while alive(pid) {
            assert!(
                asked.elapsed() < Duration::from_secs(60),
                "the node did not stop"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for PrivateRabbitMq {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
            let asked = Instant::now();
            while alive(pid) && asked.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
