//! What the hub's end-to-end tests share: a PostgreSQL server of their own in
//! a temporary directory, real room agents on loopback, the hub binary, and
//! ways to wait for what they do.
#![allow(dead_code)] // each test uses its own part of this module

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use firmware_agent::clock::SystemClock;
use firmware_agent::store::Store;

/// The hub binary cargo built for these tests.
pub fn hub_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_province-hub"))
}

/// The agent binary of the same build (`target/<profile>/firmware-agent`).
pub fn agent_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let agent = profile_dir.join("firmware-agent");
    assert!(
        agent.exists(),
        "{} is missing: build the agent of the same profile first (cargo build --release -p firmware-agent)",
        agent.display()
    );
    agent
}

/// `N` distinct loopback addresses free at the time of asking.
pub fn free_addresses<const N: usize>() -> [SocketAddr; N] {
    let listeners: [TcpListener; N] =
        std::array::from_fn(|_| TcpListener::bind("127.0.0.1:0").unwrap());
    std::array::from_fn(|i| listeners[i].local_addr().unwrap())
}

/// Calls `check` every 20 ms until it returns true; panics saying `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A PostgreSQL server in a temporary directory on a loopback port of its own.
/// PostgreSQL refuses to run as root: as root, its files belong to the
/// `postgres` user of the Debian package and its commands run as that user.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    as_postgres_user: bool,
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect(
                "PostgreSQL is not installed: apt-get install postgresql (make test installs it)",
            )
            .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
            .filter(|bin| bin.join("initdb").exists())
            .max()
            .expect("no /usr/lib/postgresql/*/bin/initdb");
        let dir = tempfile::Builder::new()
            .prefix("hub-postgres")
            .tempdir()
            .unwrap();
        // SAFETY: geteuid has no preconditions.
        let as_postgres_user = unsafe { libc::geteuid() } == 0;
        if as_postgres_user {
            let chown = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(chown.success());
        }
        let [address] = free_addresses();
        let server = Postgres {
            dir,
            bin,
            port: address.port(),
            as_postgres_user,
        };
        server.run(
            "initdb",
            &[
                "-D",
                &server.data(),
                "-U",
                "hub",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
        );
        server.start_server();
        server
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        };
        let output = command.args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}\nserver log:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
        );
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start_server(&self) {
        let options = format!(
            "-p {} -h 127.0.0.1 -k {} -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// Stops the server as a crash would (no shutdown checkpoint).
    pub fn crash(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    pub fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=hub dbname=postgres connect_timeout=10",
            self.port
        )
    }

    /// A blocking client for the test's own queries.
    pub fn client(&self) -> Db {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = runtime
            .block_on(province_hub::store::connect(
                &self.url(),
                Duration::from_secs(10),
            ))
            .unwrap();
        Db { runtime, client }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data();
        let path = self.bin.join("pg_ctl");
        let mut command = if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        };
        let _ = command
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// The test's own connection to the hub's database.
pub struct Db {
    runtime: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl Db {
    pub fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Vec<tokio_postgres::Row> {
        self.runtime
            .block_on(self.client.query(sql, params))
            .unwrap_or_else(|err| panic!("{sql}: {err}"))
    }

    /// The first column of the one row `sql` returns, as i64 (count(*) and the like).
    pub fn number(&self, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> i64 {
        self.query(sql, params)[0].get(0)
    }

    /// Events stored, or 0 before the hub made its tables.
    pub fn events(&self) -> i64 {
        let exists = self.number(
            "SELECT count(*) FROM pg_tables WHERE tablename = 'events'",
            &[],
        );
        if exists == 0 {
            0
        } else {
            self.number("SELECT count(*) FROM events", &[])
        }
    }
}

/// A process of the test's own, its stderr lines kept and offered on a channel.
pub struct Process {
    child: Child,
    lines: mpsc::Receiver<String>,
    pub log: Arc<Mutex<Vec<String>>>,
    exited: bool,
}

impl Process {
    pub fn spawn(mut command: Command) -> Process {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        Process {
            child,
            lines,
            log,
            exited: false,
        }
    }

    /// Waits for a stderr line containing `needle`; panics with the log after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => continue,
                Err(_) => panic!(
                    "no log line containing {needle:?} within {timeout:?}; log:\n{}",
                    self.log.lock().unwrap().join("\n")
                ),
            }
        }
    }

    /// Kills the process with SIGKILL, as a power cut would, and reaps it.
    pub fn kill(&mut self) {
        if !self.exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.exited = true;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A classroom: its agent's config, data directory and gRPC address.
pub struct Room {
    pub dir: tempfile::TempDir,
    pub school_code: String,
    pub room_id: String,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

impl Room {
    pub fn new(school_code: &str, room_id: &str) -> Room {
        Room::with_hub_keys(school_code, room_id, "")
    }

    /// A room that also dials the hub at `hub` (plaintext, as the hub's tests run).
    pub fn dialling(school_code: &str, room_id: &str, hub: SocketAddr) -> Room {
        Room::with_hub_keys(school_code, room_id, &format!("connect = \"{hub}\"\n"))
    }

    /// A room that serves and dials the hub over TLS only: `hub_keys` (its
    /// certificate, key, `connect` and the hub's CA) go in its `[hub]` section.
    pub fn dialling_over_tls(school_code: &str, room_id: &str, hub_keys: &str) -> Room {
        let room = Room::with_hub_keys(school_code, room_id, hub_keys);
        let config = std::fs::read_to_string(room.config()).unwrap();
        std::fs::write(room.config(), config.replace("plaintext = true\n", "")).unwrap();
        room
    }

    /// A room whose `[hub]` section also has `hub_keys` (the province's keys, say).
    pub fn with_hub_keys(school_code: &str, room_id: &str, hub_keys: &str) -> Room {
        let dir = tempfile::tempdir().unwrap();
        let [http, grpc] = free_addresses();
        let room = Room {
            dir,
            school_code: school_code.to_owned(),
            room_id: room_id.to_owned(),
            grpc,
            http,
        };
        room.write_config(hub_keys);
        room
    }

    /// Rewrites the agent's config with `hub_keys` added to its `[hub]` section;
    /// the agent reads it at its next start.
    pub fn write_config(&self, hub_keys: &str) {
        std::fs::write(
            self.config(),
            format!(
                "[room]\nschool_code = \"{}\"\nroom_id = \"{}\"\nname = \"Phòng thử\"\n\n\
                 [storage]\ndata_dir = \"data\"\n\n[http]\nlisten = \"{}\"\n\n\
                 [hub]\nlisten = \"{}\"\nplaintext = true\n{hub_keys}",
                self.school_code, self.room_id, self.http, self.grpc
            ),
        )
        .unwrap();
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("agent.toml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn database(&self) -> PathBuf {
        self.data_dir().join("agent.sqlite3")
    }

    /// The room's database, opened by this process as a second writer.
    pub fn writer(&self) -> Store {
        Store::open(&self.database(), Arc::new(SystemClock)).unwrap()
    }

    /// Adds `keys` (TOML lines) to the room's `[http]` section.
    pub fn add_http_keys(&self, keys: &str) {
        let config = std::fs::read_to_string(self.config()).unwrap();
        let config = config.replacen("[http]\n", &format!("[http]\n{keys}"), 1);
        std::fs::write(self.config(), config).unwrap();
    }

    /// Starts the agent and waits until it is ready.
    pub fn start(&self) -> Process {
        self.start_with_env(&[])
    }

    /// Starts the agent with `env` set and waits until it is ready.
    pub fn start_with_env(&self, env: &[(&str, &str)]) -> Process {
        let mut command = Command::new(agent_binary());
        command.envs(env.iter().copied());
        self.start_with(command)
    }

    /// Starts the agent inside the network namespace `namespace` and waits until it is ready.
    pub fn start_in(&self, namespace: &str) -> Process {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", namespace])
            .arg(agent_binary());
        self.start_with(command)
    }

    fn start_with(&self, mut command: Command) -> Process {
        command
            .args(["run", "--config"])
            .arg(self.config())
            .env("RUST_LOG", "info")
            .env_remove("JOURNAL_STREAM");
        let agent = Process::spawn(command);
        agent.wait_for_log("agent ready", Duration::from_secs(30));
        agent
    }

    /// Runs a one-shot command of the agent with this room's config.
    pub fn command(&self, args: &[&str]) -> std::process::Output {
        Command::new(agent_binary())
            .args(args)
            .arg("--config")
            .arg(self.config())
            .output()
            .unwrap()
    }

    /// What the agent has acknowledged: every seq up to this one is stored by the hub.
    pub fn acked_seq(&self) -> i64 {
        let conn = rusqlite::Connection::open(self.database()).unwrap();
        conn.query_row(
            "SELECT coalesce(max(acked_seq), 0) FROM outbox_ack",
            [],
            |row| row.get(0),
        )
        .unwrap()
    }

    /// The `[[rooms]]` entry of a hub config pulling this room.
    pub fn hub_entry(&self) -> String {
        format!(
            "[[rooms]]\nschool_code = \"{}\"\nroom_id = \"{}\"\naddress = \"{}\"\n\n",
            self.school_code, self.room_id, self.grpc
        )
    }
}

/// A hub config in a temporary directory, pulling `rooms` into `postgres`.
pub struct HubConfig {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub http: SocketAddr,
}

impl HubConfig {
    pub fn new(postgres: &Postgres, rooms: &[&Room]) -> HubConfig {
        HubConfig::with_extra(postgres, rooms, "")
    }

    /// A hub that also accepts rooms' links on `listen`, landing batches of at most 500.
    pub fn with_dial_in(postgres: &Postgres, rooms: &[&Room], listen: SocketAddr) -> HubConfig {
        HubConfig::with_extra(
            postgres,
            rooms,
            &format!("max_batch = 500\n\n[dial_in]\nlisten = \"{listen}\"\n"),
        )
    }

    /// A hub that accepts rooms' links on `listen` over mutual TLS: `tls`
    /// holds the hub's certificate, key and the rooms' CA (PEM files), used
    /// for its `[tls]` and its `[dial_in]` sections alike.
    pub fn with_tls_dial_in(postgres: &Postgres, listen: SocketAddr, tls: [&Path; 3]) -> HubConfig {
        let [cert, key, room_ca] = tls.map(|path| format!("{path:?}"));
        let files = format!("cert = {cert}\nkey = {key}\nroom_ca = {room_ca}\n");
        let config = HubConfig::with_dial_in(postgres, &[], listen);
        let text = std::fs::read_to_string(&config.path)
            .unwrap()
            .replace("[tls]\nplaintext = true\n", &format!("[tls]\n{files}"))
            .replace("[dial_in]\n", &format!("[dial_in]\n{files}"));
        std::fs::write(&config.path, text).unwrap();
        config
    }

    /// `extra` goes at the end of the `[sync]` section.
    pub fn with_extra(postgres: &Postgres, rooms: &[&Room], extra: &str) -> HubConfig {
        let dir = tempfile::tempdir().unwrap();
        let [http] = free_addresses();
        let path = dir.path().join("hub.toml");
        let entries: String = rooms.iter().map(|room| room.hub_entry()).collect();
        std::fs::write(
            &path,
            format!(
                "[postgres]\nurl = \"{}\"\n\n[http]\nlisten = \"{http}\"\n\n[tls]\nplaintext = true\n\n\
                 [sync]\nretry_min_ms = 50\nretry_max_ms = 1000\nsilence_timeout_seconds = 15\n{extra}\n{entries}",
                postgres.url()
            ),
        )
        .unwrap();
        HubConfig { dir, path, http }
    }

    /// Starts the hub and waits until it is ready.
    pub fn start(&self) -> Process {
        let mut command = Command::new(hub_binary());
        command
            .args(["run", "--config"])
            .arg(&self.path)
            .env("RUST_LOG", "info");
        let hub = Process::spawn(command);
        hub.wait_for_log("province hub ready", Duration::from_secs(30));
        hub
    }
}

/// GET `http://address/path`: status and body.
pub fn http_get(address: SocketAddr, path: &str) -> (u16, String) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent();
    let mut response = agent
        .get(&format!("http://{address}{path}"))
        .call()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

impl Postgres {
    /// The server's main process (the postmaster); its backends are its children.
    pub fn postmaster_pid(&self) -> u32 {
        let pid_file = self.dir.path().join("data").join("postmaster.pid");
        let contents = std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|err| panic!("{}: {err}", pid_file.display()));
        contents
            .lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .unwrap_or_else(|| panic!("{} names no process", pid_file.display()))
    }
}
