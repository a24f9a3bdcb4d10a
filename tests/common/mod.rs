//! What the end-to-end tests share: a real agent process on loopback with a
//! config of the test's own, and ways to talk to it and stop it.
#![allow(dead_code)] // each test file uses its own part of this module

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The agent binary cargo built for these tests.
pub fn agent_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_firmware-agent"))
}

/// The repository's top directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// `../shared/testdata` beside the repository, or `CLASSROOM_SHARED_DIR/testdata`.
pub fn shared_testdata() -> PathBuf {
    let shared = std::env::var_os("CLASSROOM_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared"));
    shared.join("testdata")
}

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `N` distinct loopback addresses free at the time of asking: every listener is
/// held until all are chosen, so the kernel cannot hand out the same port twice.
pub fn free_addresses<const N: usize>() -> [SocketAddr; N] {
    let listeners: [TcpListener; N] =
        std::array::from_fn(|_| TcpListener::bind("127.0.0.1:0").unwrap());
    std::array::from_fn(|i| listeners[i].local_addr().unwrap())
}

/// A room config in a temporary directory, with its own ports and data directory.
pub struct Room {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
}

impl Room {
    /// A room whose config is the minimal one plus `extra` TOML (extra sections).
    pub fn new(extra: &str) -> Room {
        Room::with_hub("plaintext = true\n", extra)
    }

    /// A room whose `[hub]` section has `hub` (keys after `listen`), plus `extra` TOML.
    pub fn with_hub(hub: &str, extra: &str) -> Room {
        let dir = tempfile::tempdir().unwrap();
        let [http, grpc] = free_addresses();
        let config_path = dir.path().join("agent.toml");
        let room = Room {
            dir,
            config_path,
            http,
            grpc,
        };
        room.write_config_with_hub(hub, extra);
        room
    }

    pub fn write_config(&self, extra: &str) {
        self.write_config_with_hub("plaintext = true\n", extra);
    }

    pub fn write_config_with_hub(&self, hub: &str, extra: &str) {
        let config = format!(
            "[room]\nschool_code = \"TEST-01\"\nroom_id = \"P101\"\nname = \"Phòng thử\"\n\n\
             [storage]\ndata_dir = \"data\"\n\n[http]\nlisten = \"{}\"\n\n[hub]\nlisten = \"{}\"\n{hub}\n{extra}\n",
            self.http, self.grpc,
        );
        std::fs::write(&self.config_path, config).unwrap();
    }

    /// Makes the agent listen on `listen` (such as `[::]:PORT`) instead of its loopback address.
    pub fn set_http_listen(&self, listen: &str) {
        let config = std::fs::read_to_string(&self.config_path).unwrap();
        std::fs::write(
            &self.config_path,
            config.replace(
                &format!("listen = \"{}\"", self.http),
                &format!("listen = \"{listen}\""),
            ),
        )
        .unwrap();
    }

    /// Runs the agent on this room's config in a network namespace of its own
    /// (`unshare --net`, loopback up): bash `setup` lines before it starts,
    /// `probes` once it is ready, each printing `key value` lines; then stops it
    /// with SIGTERM and prints `exit CODE`. Panics when the script fails. The
    /// log exists before the agent starts (so its follower cannot find it
    /// missing and give up), is followed from its first line, and an agent
    /// that never gets ready is killed rather than left holding the test's pipes.
    pub fn run_in_own_network(&self, setup: &str, probes: &str) -> NamespaceRun {
        let script = format!(
            "set -e\nip link set lo up\n{setup}\n\
             : >'{dir}/agent.log'\n\
             '{bin}' run --config '{config}' >/dev/null 2>>'{dir}/agent.log' & agent=$!\n\
             timeout 20 grep -m1 -q 'agent ready' <(tail -n +1 -f '{dir}/agent.log' 2>/dev/null) || {{ echo 'agent did not start'; kill -KILL $agent; cat '{dir}/agent.log'; exit 1; }}\n\
             {probes}\nkill -TERM $agent; wait $agent; echo \"exit $?\"\n",
            bin = agent_binary().display(),
            config = self.config_path.display(),
            dir = self.dir.path().display(),
        );
        let output = Command::new("unshare")
            .args(["--map-root-user", "--net", "bash", "-c", &script])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(
            output.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        NamespaceRun { text }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn database(&self) -> PathBuf {
        self.data_dir().join("agent.sqlite3")
    }

    /// Runs a one-shot command of the binary with this room's config appended.
    pub fn command(&self, args: &[&str]) -> std::process::Output {
        Command::new(agent_binary())
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .output()
            .unwrap()
    }

    /// Imports the roster `csv` with `roster import`; panics with its error.
    pub fn import_roster(&self, csv: &str) {
        let path = self.dir.path().join("roster.csv");
        std::fs::write(&path, csv).unwrap();
        let imported = self.command(&["roster", "import", path.to_str().unwrap()]);
        assert!(
            imported.status.success(),
            "{}",
            String::from_utf8_lossy(&imported.stderr)
        );
    }

    /// Runs `check-config` on this room's config; its exit code and what it wrote to stderr.
    pub fn check_config(&self) -> (Option<i32>, String) {
        let output = Command::new(agent_binary())
            .arg("check-config")
            .arg(&self.config_path)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// The number, from 1, of the first line of this room's config that `is_it` picks.
    pub fn config_line(&self, is_it: impl Fn(&str) -> bool) -> usize {
        std::fs::read_to_string(&self.config_path)
            .unwrap()
            .lines()
            .position(is_it)
            .expect("the config has the line")
            + 1
    }

    /// From an async test: starts the agent and waits, off the runtime's
    /// threads, for a log line containing `ready_line`.
    pub async fn start_async(&self, ready_line: &'static str) -> RunningAgent {
        let config = self.config_path.clone();
        tokio::task::spawn_blocking(move || {
            let agent = RunningAgent::spawn(&config, &[]);
            agent.wait_for_log(ready_line, Duration::from_secs(60));
            agent
        })
        .await
        .unwrap()
    }

    /// Starts `firmware-agent run` on a simulated clock that reads `instant`
    /// (RFC 3339 with its offset) and moves only by [`RunningAgent::advance`]
    /// and its siblings; waits until the agent says it is ready.
    pub fn start_at(&self, instant: &str) -> RunningAgent {
        let agent = RunningAgent::spawn_simulated(&self.config_path, instant);
        agent.wait_for_log("agent ready", Duration::from_secs(20));
        agent
    }

    /// Starts `firmware-agent run` and waits until it says it is ready.
    pub fn start(&self) -> RunningAgent {
        let agent = RunningAgent::spawn(&self.config_path, &[]);
        agent.wait_for_log("agent ready", Duration::from_secs(20));
        agent
    }
}

/// A running agent; killed when dropped if still running.
pub struct RunningAgent {
    pid: i32,
    exited: mpsc::Receiver<ExitStatus>,
    status: Option<ExitStatus>,
    /// Reads stderr to its end; joined on exit so the log is complete.
    reader: Option<std::thread::JoinHandle<()>>,
    /// A line each time the reader adds one to `log`: the waits' wake-up.
    lines: mpsc::Receiver<String>,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// How many of `log`'s lines the waits have passed over: a wait looks
    /// only at lines after the last one it matched.
    passed: std::sync::atomic::AtomicUsize,
    /// The simulated clock's command line, for an agent started on one.
    clock_commands: Option<std::process::ChildStdin>,
    clock_commands_sent: u64,
}

impl RunningAgent {
    pub fn spawn(config: &Path, env: &[(&str, &str)]) -> RunningAgent {
        Self::spawn_with(config, env, false)
    }

    /// Spawns the agent on a simulated clock starting at `instant`.
    pub fn spawn_simulated(config: &Path, instant: &str) -> RunningAgent {
        Self::spawn_with(config, &[("FIRMWARE_AGENT_SIMULATED_CLOCK", instant)], true)
    }

    /// Spawns the agent inside the network namespace `namespace` (`ip netns`):
    /// `ip netns exec` becomes the agent, so its PID is the agent's.
    pub fn spawn_in_network_namespace(config: &Path, namespace: &str) -> RunningAgent {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", namespace])
            .arg(agent_binary());
        Self::spawn_command(command, config, &[], false)
    }

    fn spawn_with(config: &Path, env: &[(&str, &str)], steered: bool) -> RunningAgent {
        Self::spawn_command(Command::new(agent_binary()), config, env, steered)
    }

    /// Spawns `command` (the agent binary, or what becomes it) with `run --config`.
    fn spawn_command(
        mut command: Command,
        config: &Path,
        env: &[(&str, &str)],
        steered: bool,
    ) -> RunningAgent {
        let stdin = if steered {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        command
            .args(["run", "--config"])
            .arg(config)
            .stdin(stdin)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
            .env("RUST_LOG", "info")
            .env_remove("JOURNAL_STREAM")
            .env_remove("FIRMWARE_AGENT_SIMULATED_CLOCK");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let clock_commands = child.stdin.take();
        let stderr = child.stderr.take().unwrap();
        let pid = child.id() as i32;
        let (exit_tx, exited) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = exit_tx.send(child.wait().unwrap());
        });
        let (tx, lines) = mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line.clone());
                if tx.send(line).is_err() {
                    // Keep draining so the agent never blocks on a full pipe.
                    continue;
                }
            }
        });
        RunningAgent {
            pid,
            exited,
            status: None,
            reader: Some(reader),
            lines,
            log,
            passed: std::sync::atomic::AtomicUsize::new(0),
            clock_commands,
            clock_commands_sent: 0,
        }
    }

    /// Lets `span` pass on the agent's simulated clock (`90s`, `15m`, `1h 30m`)
    /// and waits until the agent has moved it; what the move wakes then runs
    /// on its own, so wait for its effect as for any other.
    pub fn advance(&mut self, span: &str) {
        self.steer_clock(&format!("advance {span}"));
    }

    /// Lets time pass on the simulated clock until it reads `instant`.
    pub fn advance_to(&mut self, instant: &str) {
        self.steer_clock(&format!("advance-to {instant}"));
    }

    /// Steps the simulated wall clock to `instant`, forward or back, as NTP would.
    pub fn step_to(&mut self, instant: &str) {
        self.steer_clock(&format!("step-to {instant}"));
    }

    /// Sends a clock command and waits for the agent's word that the clock
    /// moved. Lines logged before the command are passed over; what the move
    /// woke may log before that word, and those lines are left for the next wait.
    fn steer_clock(&mut self, command: &str) {
        use std::io::Write;
        let sent_after = self.log.lock().unwrap().len();
        self.passed
            .fetch_max(sent_after, std::sync::atomic::Ordering::SeqCst);
        let input = self
            .clock_commands
            .as_mut()
            .expect("the agent runs on a simulated clock: start it with Room::start_at");
        writeln!(input, "{command}").unwrap();
        input.flush().unwrap();
        self.clock_commands_sent += 1;
        let moved = format!(
            "simulated clock moved: command {},",
            self.clock_commands_sent
        );
        self.wait_for_line(&moved, sent_after, false, Duration::from_secs(10));
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for a log line containing `needle` after the last line a wait
    /// matched; panics with the log so far after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        let from = self.passed.load(std::sync::atomic::Ordering::SeqCst);
        self.wait_for_line(needle, from, true, timeout)
    }

    /// Waits for a line containing `needle` at index `from` or later; with
    /// `pass_over`, the lines up to the one found count as passed.
    fn wait_for_line(
        &self,
        needle: &str,
        from: usize,
        pass_over: bool,
        timeout: Duration,
    ) -> String {
        let deadline = Instant::now() + timeout;
        let mut log_ended = false;
        loop {
            let found = {
                let log = self.log.lock().unwrap();
                log.iter()
                    .enumerate()
                    .skip(from)
                    .find(|(_, line)| line.contains(needle))
                    .map(|(index, line)| (index, line.clone()))
            };
            if let Some((index, line)) = found {
                if pass_over {
                    self.passed
                        .fetch_max(index + 1, std::sync::atomic::Ordering::SeqCst);
                }
                return line;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let gave_up = log_ended
                || left.is_zero()
                || match self.lines.recv_timeout(left) {
                    Ok(_) => false,
                    Err(mpsc::RecvTimeoutError::Timeout) => true,
                    // The agent's log ended: look once more at all it wrote.
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        log_ended = true;
                        false
                    }
                };
            if gave_up {
                panic!(
                    "no log line containing {needle:?} within {timeout:?}; log:\n{}",
                    self.log.lock().unwrap().join("\n")
                );
            }
        }
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the PID of a child this test started.
        unsafe { libc::kill(self.pid(), signal) };
    }

    /// Waits for the process to exit, up to `timeout`; returns its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.exited.recv_timeout(timeout).ok();
            if self.status.is_some()
                && let Some(reader) = self.reader.take()
            {
                let _ = reader.join();
            }
        }
        self.status
    }

    /// Kills the agent with SIGKILL, as a power cut would, and waits for it to be gone.
    pub fn kill(&mut self) -> ExitStatus {
        self.signal(libc::SIGKILL);
        self.wait_exit(Duration::from_secs(10))
            .expect("a killed process exits")
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        if self.status.is_none() && self.exited.try_recv().is_err() {
            self.signal(libc::SIGKILL);
            let _ = self.exited.recv_timeout(Duration::from_secs(10));
        }
    }
}

/// GET `http://address/path`, returning status and body.
pub fn http_get(address: SocketAddr, path: &str) -> (u16, String) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut response = agent
        .get(&format!("http://{address}{path}"))
        .call()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

/// An HTTP call to the agent's API, returning the status and the JSON body
/// (or the text, as a JSON string, when the body is not JSON).
pub async fn api_call(
    address: SocketAddr,
    method: &'static str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let url = format!("http://{address}{path}");
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut response = match (method, body) {
            ("GET", _) => agent.get(&url).call(),
            // A change is sent as JSON, even without a body, as the panel's page sends it.
            ("DELETE", _) => agent
                .delete(&url)
                .header("content-type", "application/json")
                .call(),
            (_, Some(body)) => agent.post(&url).send_json(body),
            (_, None) => agent
                .post(&url)
                .header("content-type", "application/json")
                .send_empty(),
        }
        .unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    })
    .await
    .unwrap()
}

/// The value of one series in a scrape of the agent's /metrics, named with its
/// labels as Prometheus prints them (`name{label="value"}`); `None` until it is counted.
pub fn metric(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// `HH:MM:SS`, `seconds` from now in the room's zone (the default, Asia/Ho_Chi_Minh).
pub fn local_time_in(seconds: i64) -> String {
    let zone = jiff::tz::TimeZone::get("Asia/Ho_Chi_Minh").unwrap();
    let at = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(seconds))
        .unwrap()
        .to_zoned(zone);
    at.strftime("%H:%M:%S").to_string()
}

/// What a script run beside the agent in its own network namespace printed.
pub struct NamespaceRun {
    pub text: String,
}

impl NamespaceRun {
    /// The value of the script's `key value` line.
    pub fn answer(&self, key: &str) -> String {
        let text = &self.text;
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
            .to_owned()
    }
}
