//! Throw-away PostgreSQL clusters for the fault tests, on free ports, run as the `postgres` user
//! with Debian's server binaries (the server refuses to run as root), removed when dropped: a
//! server a test may crash and start again, or a primary with a streaming standby
//! (`pg_basebackup`) that a test promotes after killing the primary. Nothing here touches the
//! shared server.

use std::path::PathBuf;
use std::process::Command;

/// The server binaries of the newest PostgreSQL installed the Debian way.
fn pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries under /usr/lib/postgresql")
        .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
        .filter(|bin| bin.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL version with pg_ctl")
}

fn as_postgres(program: &str, args: &[&str]) {
    let status = Command::new("runuser")
        .args([
            "-u",
            "postgres",
            "--",
            &pg_bin().join(program).to_string_lossy(),
        ])
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("runuser");
    assert!(status.success(), "{program} {args:?} failed");
}

pub struct PrivatePostgres {
    dir: PathBuf,
    pub port: u16,
    /// Extra `-c` settings the server runs with.
    settings: Vec<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("an address")
        .port()
}

/// A directory of the cluster's, owned by `postgres`.
fn cluster_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("confab-pg-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let status = Command::new("chown")
        .arg("postgres")
        .arg(&dir)
        .status()
        .expect("chown");
    assert!(status.success());
    dir
}

impl PrivatePostgres {
    /// A new cluster, started.
    pub fn start() -> PrivatePostgres {
        Self::start_with(&[])
    }

    /// A new cluster, started with these extra `-c` settings.
    pub fn start_with(settings: &[&str]) -> PrivatePostgres {
        let dir = cluster_dir();
        let data = dir.join("data");
        as_postgres(
            "initdb",
            &[
                "-D",
                data.to_str().expect("a path"),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        let pg = PrivatePostgres {
            dir,
            port: free_port(),
            settings: settings.iter().map(|s| (*s).to_owned()).collect(),
        };
        pg.up();
        pg
    }

    /// A streaming standby of this server, from a base backup, started (it follows the primary
    /// until promoted).
    pub fn standby(&self) -> PrivatePostgres {
        let dir = cluster_dir();
        let data = dir.join("data");
        as_postgres(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-D",
                data.to_str().expect("a path"),
                "-R",
                "-X",
                "stream",
                // Checkpoint now rather than wait for the next one (minutes away).
                "--checkpoint=fast",
                "--no-sync",
            ],
        );
        let standby = PrivatePostgres {
            dir,
            port: free_port(),
            settings: vec!["hot_standby=on".into()],
        };
        standby.up();
        standby
    }

    fn data(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }

    pub fn up(&self) {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        for setting in &self.settings {
            options.push_str(&format!(" -c {setting}"));
        }
        let log = self.dir.join("log").to_string_lossy().into_owned();
        as_postgres(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
    }

    /// Stop at once, as a crash would: no checkpoint, clients cut off.
    pub fn crash(&self) {
        as_postgres(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    /// Make a standby the primary, waiting until it takes writes.
    pub fn promote(&self) {
        as_postgres("pg_ctl", &["-D", &self.data(), "-w", "promote"]);
    }

    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                &pg_bin().join("pg_ctl").to_string_lossy(),
            ])
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
