//! Bells, lights and switches, end to end: the real agent ringing its
//! timetable's bell and taking `bell ring` / `light` commands, and smart
//! switches through a real mosquitto broker with a simulated Tasmota device.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{Room, RunningAgent, free_port, http_get, local_time_in};
use firmware_agent::actuators::controller::{Controller, Request};
use firmware_agent::actuators::mqtt::{MqttLink, RemoteCommand};
use firmware_agent::clock::SystemClock;
use firmware_agent::config::Config;
use firmware_agent::proto::{self, actuation::Cause, actuation::Outcome};
use firmware_agent::schedule::Action;
use firmware_agent::store::Store;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A mosquitto broker of the test's own, on a loopback port; ended by its PID.
struct Mosquitto {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Mosquitto {
    fn start() -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        Mosquitto {
            child: Mosquitto::spawn(port, dir.path()),
            port,
            dir,
        }
    }

    fn spawn(port: u16, dir: &Path) -> Child {
        let config = dir.join("mosquitto.conf");
        std::fs::write(&config, format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\nlog_dest stderr\n")).unwrap();
        let binary = if Path::new("/usr/sbin/mosquitto").exists() {
            PathBuf::from("/usr/sbin/mosquitto")
        } else {
            PathBuf::from("mosquitto")
        };
        let mut child = Command::new(binary)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mosquitto is installed (make setup installs Debian's package)");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        loop {
            let line = lines
                .next()
                .expect("mosquitto exited before it was running")
                .unwrap();
            if line.contains("running") {
                break;
            }
        }
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        child
    }

    /// Ends the broker (SIGTERM to its PID) and starts a new one on the same port.
    fn restart(&mut self) {
        self.stop();
        self.child = Mosquitto::spawn(self.port, self.dir.path());
    }

    fn stop(&mut self) {
        // SAFETY: kill(2) on the PID of the broker this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Tasmota device that answers every POWER command on its state topic, and tells what it received.
/// Its availability is Tasmota's: `tele/<topic>/LWT` says `Online` (retained) once it listens, and its
/// last will says `Offline`. Told a PulseTime (tenths of a second, up to 111), it switches itself off
/// that long after an ON and reports it, as the firmware does.
async fn simulated_tasmota(
    port: u16,
    topic: &str,
) -> mpsc::UnboundedReceiver<(String, String, QoS)> {
    let mut options = MqttOptions::new(format!("tasmota-{topic}"), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    options.set_last_will(rumqttc::LastWill::new(
        format!("tele/{topic}/LWT"),
        "Offline",
        QoS::AtLeastOnce,
        true,
    ));
    let (client, mut event_loop) = AsyncClient::new(options, 32);
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let (ready_tx, mut ready) = mpsc::unbounded_channel();
    let topic = topic.to_owned();
    tokio::spawn(async move {
        let mut pulse_time = None;
        loop {
            match event_loop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    client
                        .subscribe(format!("cmnd/{topic}/+"), QoS::AtLeastOnce)
                        .await
                        .unwrap();
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    client
                        .publish(
                            format!("tele/{topic}/LWT"),
                            QoS::AtLeastOnce,
                            true,
                            "Online",
                        )
                        .await
                        .unwrap();
                    let _ = ready_tx.send(());
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let payload = String::from_utf8_lossy(&publish.payload).to_string();
                    if publish.topic.ends_with("/PulseTime") {
                        pulse_time = payload
                            .parse::<u64>()
                            .ok()
                            .filter(|tenths| (1..=111).contains(tenths))
                            .map(|tenths| Duration::from_millis(tenths * 100));
                    }
                    if publish.topic.ends_with("/POWER") {
                        client
                            .publish(
                                format!("stat/{topic}/POWER"),
                                QoS::AtLeastOnce,
                                false,
                                payload.to_uppercase(),
                            )
                            .await
                            .unwrap();
                        if let (Some(pulse), true) =
                            (pulse_time, payload.eq_ignore_ascii_case("ON"))
                        {
                            let (client, topic) = (client.clone(), topic.clone());
                            tokio::spawn(async move {
                                tokio::time::sleep(pulse).await;
                                client
                                    .publish(
                                        format!("stat/{topic}/POWER"),
                                        QoS::AtLeastOnce,
                                        false,
                                        "OFF",
                                    )
                                    .await
                                    .unwrap();
                            });
                        }
                    }
                    let _ = seen_tx.send((publish.topic.clone(), payload, publish.qos));
                }
                Ok(_) => {}
                // The broker went away: poll again, which reconnects.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    ready.recv().await.expect("the device subscribed");
    seen
}

/// The next POWER command a simulated device received, skipping its settings (PulseTime).
async fn next_power(
    device: &mut mpsc::UnboundedReceiver<(String, String, QoS)>,
) -> (String, String, QoS) {
    loop {
        let received = device.recv().await.unwrap();
        if received.0.ends_with("/POWER") {
            return received;
        }
    }
}

/// Publishes one message as another client would (a wall switch's report, a device's last will), and waits for the broker's PUBACK.
async fn publish(port: u16, topic: &str, payload: &str, retain: bool) {
    let (client, mut event_loop) = AsyncClient::new(
        MqttOptions::new(format!("publisher-{}", free_port()), "127.0.0.1", port),
        8,
    );
    client
        .publish(topic, QoS::AtLeastOnce, retain, payload)
        .await
        .unwrap();
    while !matches!(
        event_loop.poll().await.unwrap(),
        Event::Incoming(Packet::PubAck(_))
    ) {}
}

/// A listener on a topic filter, for what the agent publishes.
async fn listen(port: u16, filter: &str) -> mpsc::UnboundedReceiver<(String, String, bool)> {
    let mut options = MqttOptions::new(format!("listener-{}", free_port()), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut event_loop) = AsyncClient::new(options, 32);
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, mut ready) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _client = client;
        while let Ok(event) = event_loop.poll().await {
            match event {
                Event::Incoming(Packet::SubAck(_)) => {
                    let _ = ready_tx.send(());
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let _ = tx.send((
                        p.topic.clone(),
                        String::from_utf8_lossy(&p.payload).to_string(),
                        p.retain,
                    ));
                }
                _ => {}
            }
        }
    });
    ready.recv().await.unwrap();
    rx
}

struct MqttRoom {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    controller: Controller,
    link: Arc<MqttLink>,
    commands: mpsc::Receiver<RemoteCommand>,
    shutdown: CancellationToken,
}

/// A room with a Tasmota bell `bell_p101` and a Tasmota light `ghost` that does not exist.
async fn mqtt_room(port: u16) -> MqttRoom {
    let source = format!(
        r#"
        [room]
        school_code = "T-01"
        room_id = "P101"
        [actuators.mqtt]
        host = "127.0.0.1"
        port = {port}
        confirm_timeout_ms = 300
        retries = 1
        [[actuators.device]]
        name = "bell"
        kind = "bell"
        max_on_seconds = 15
        driver = {{ type = "mqtt", flavor = "tasmota", topic = "bell_p101" }}
        [[actuators.device]]
        name = "lights"
        kind = "light"
        driver = {{ type = "mqtt", flavor = "tasmota", topic = "ghost" }}
        "#
    );
    let config = Config::parse(Path::new("room.toml"), &source).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(Store::open(&dir.path().join("agent.sqlite3"), Arc::new(SystemClock)).unwrap());
    let shutdown = CancellationToken::new();
    let (link, commands, _task) = MqttLink::start(
        config.actuators.mqtt.as_ref().unwrap(),
        &config.room,
        &config.actuators.device,
        shutdown.clone(),
        Arc::new(SystemClock),
    );
    link.subscribe_connected()
        .wait_for(|connected| *connected)
        .await
        .unwrap();
    let controller = Controller::open(
        &config,
        store.clone(),
        Arc::new(SystemClock),
        Some(link.clone()),
    )
    .unwrap();
    MqttRoom {
        _dir: dir,
        store,
        controller,
        link,
        commands,
        shutdown,
    }
}

fn switch(device: &str, on: bool) -> Request {
    Request {
        device: device.into(),
        action: Action::Switch { on },
        cause: Cause::Teacher,
        hold_until: None,
        note: String::new(),
    }
}

fn actuations(store: &Store) -> Vec<proto::Actuation> {
    let events =
        firmware_agent::store::outbox::read_after(&store.reader().unwrap(), 0, 1000).unwrap();
    events
        .iter()
        .filter_map(|e| match e.payload().unwrap() {
            Some(proto::event::Payload::Actuation(a)) => Some(a),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tasmota_device_confirms_commands_sent_with_qos_1_and_home_assistant_sees_the_room() {
    let broker = Mosquitto::start();
    let mut discovery = listen(broker.port, "homeassistant/switch/#").await;
    let mut device = simulated_tasmota(broker.port, "bell_p101").await;
    let mut room = mqtt_room(broker.port).await;

    // At each connection the bell is told to switch itself off after its maximum (15 s = PulseTime 115).
    let (topic, payload, _) = device.recv().await.unwrap();
    assert_eq!(
        (topic.as_str(), payload.as_str()),
        ("cmnd/bell_p101/PulseTime", "115")
    );

    // The safe state at start: off.
    let (topic, payload, qos) = next_power(&mut device).await;
    assert_eq!(
        (topic.as_str(), payload.as_str(), qos),
        ("cmnd/bell_p101/POWER", "OFF", QoS::AtLeastOnce)
    );

    let record = room.controller.perform(switch("bell", true)).await.unwrap();
    assert_eq!(record.outcome, Outcome::Confirmed as i32, "{record:?}");
    let (topic, payload, qos) = next_power(&mut device).await;
    assert_eq!(
        (topic.as_str(), payload.as_str(), qos),
        ("cmnd/bell_p101/POWER", "ON", QoS::AtLeastOnce)
    );
    assert_eq!(
        room.controller
            .perform(switch("bell", false))
            .await
            .unwrap()
            .outcome,
        Outcome::Confirmed as i32
    );

    // Home Assistant discovery: both devices announced, retained, with the agent's last will as availability.
    let mut announced = Vec::new();
    while announced.len() < 2 {
        let (topic, payload, _) = discovery.recv().await.unwrap();
        let config: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(
            config["availability_topic"],
            "classroom/T-01/P101/availability"
        );
        announced.push(topic);
    }
    announced.sort();
    assert_eq!(
        announced,
        [
            "homeassistant/switch/t_01_p101/bell/config",
            "homeassistant/switch/t_01_p101/lights/config"
        ]
    );

    // A command from home automation reaches the agent as such.
    let (automation, _event_loop) = AsyncClient::new(
        MqttOptions::new("home-assistant", "127.0.0.1", broker.port),
        8,
    );
    automation
        .publish(
            "classroom/T-01/P101/lights/set",
            QoS::AtLeastOnce,
            false,
            "ON",
        )
        .await
        .unwrap();
    let mut event_loop = _event_loop;
    let received = tokio::select! {
        command = room.commands.recv() => command.unwrap(),
        () = async { loop { let _ = event_loop.poll().await; } } => unreachable!(),
    };
    assert_eq!(
        received,
        RemoteCommand {
            device: "lights".into(),
            on: true
        }
    );
    room.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bell_that_comes_online_after_the_agent_is_told_its_pulse_time() {
    let broker = Mosquitto::start();
    let mut pulse_times = listen(broker.port, "cmnd/bell_p101/PulseTime").await;
    let room = mqtt_room(broker.port).await;
    // The bell joins the broker only once the agent has said what it says at connection, to nobody.
    pulse_times.recv().await.unwrap();
    let mut bell = simulated_tasmota(broker.port, "bell_p101").await;
    let told = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let (topic, payload, _) = bell.recv().await.unwrap();
            if topic == "cmnd/bell_p101/PulseTime" {
                return payload;
            }
        }
    })
    .await
    .expect("a bell that came online late is told its PulseTime");
    assert_eq!(told, "115", "15 s, its maximum");
    room.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_device_times_out_after_its_retries_and_is_reported() {
    let broker = Mosquitto::start();
    let room = mqtt_room(broker.port).await;
    let record = room
        .controller
        .perform(switch("lights", true))
        .await
        .unwrap();
    assert_eq!(record.outcome, Outcome::TimedOut as i32);
    assert!(
        record.detail.contains("no confirmation after 2 attempt(s)"),
        "{}",
        record.detail
    );
    let stored = actuations(&room.store);
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (
            stored[0].device.as_str(),
            stored[0].outcome,
            stored[0].cause
        ),
        ("lights", Outcome::TimedOut as i32, Cause::Teacher as i32)
    );
    room.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_restarted_mid_day_is_reconnected_to() {
    let mut broker = Mosquitto::start();
    let _device = simulated_tasmota(broker.port, "bell_p101").await;
    let room = mqtt_room(broker.port).await;
    assert_eq!(
        room.controller
            .perform(switch("bell", true))
            .await
            .unwrap()
            .outcome,
        Outcome::Confirmed as i32
    );

    let mut connected = room.link.subscribe_connected();
    broker.restart();
    connected.wait_for(|up| !*up).await.unwrap();
    connected.wait_for(|up| *up).await.unwrap();
    // The device reconnects on its own; commands are confirmed again once it has subscribed.
    let mut device = simulated_tasmota(broker.port, "bell_p101").await;
    let record = room
        .controller
        .perform(switch("bell", false))
        .await
        .unwrap();
    assert_eq!(record.outcome, Outcome::Confirmed as i32, "{record:?}");
    let mut off_seen = false;
    while let Ok((topic, payload, _)) = device.try_recv() {
        off_seen |= topic == "cmnd/bell_p101/POWER" && payload == "OFF";
    }
    assert!(off_seen);
    room.shutdown.cancel();
}

/// A room with a simulated bell and light, and `periods` as its only shift's periods.
fn room_config(periods: &str) -> String {
    format!(
        r#"
        [schedule]
        bell = "bell"
        lights = ["lights"]
        lights_on_before_minutes = 0
        [schedule.patterns.start]
        pulses_ms = [50]
        [schedule.patterns.end]
        pulses_ms = [30, 30]
        gap_ms = 20
        [[schedule.shifts]]
        name = "Sáng"
        days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        periods = [{periods}]
        [[actuators.device]]
        name = "bell"
        kind = "bell"
        driver = {{ type = "simulated" }}
        [[actuators.device]]
        name = "lights"
        kind = "light"
        zone = "front"
        driver = {{ type = "simulated", active_low = true }}
        "#
    )
}

/// A morning shift's periods: five of 45 minutes, with the longer break after the second.
const MORNING: [(&str, &str); 5] = [
    ("07:00", "07:45"),
    ("07:50", "08:35"),
    ("08:55", "09:40"),
    ("09:45", "10:30"),
    ("10:35", "11:20"),
];

/// The periods of [`MORNING`] as the config writes them.
fn morning_periods() -> String {
    MORNING
        .iter()
        .map(|(start, end)| format!("{{ start = \"{start}\", end = \"{end}\" }}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `HH:MM` on Monday 7 September 2026 in the room's zone, as the simulated clock takes it.
fn monday(time: &str) -> String {
    format!("2026-09-07T{time}:00+07:00")
}

/// Whether the room's API shows device `name` on, waiting up to 10 s (checked every 20 ms) for it to show `on`.
fn wait_until_shown(room: &Room, name: &str, on: bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let devices: serde_json::Value =
            serde_json::from_str(&http_get(room.http, "/api/actuators").1).unwrap();
        if device(&devices, name)["on"] == on {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "`{name}` never showed on = {on}: {devices}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lets a ring of the bell with `pattern`'s pulses and gap run its course on the agent's simulated
/// clock: each pulse passes once the room shows the bell on, each gap once it shows it off.
fn ring_through(agent: &mut RunningAgent, room: &Room, (pulses_ms, gap_ms): (&[u32], u32)) {
    for (i, pulse) in pulses_ms.iter().enumerate() {
        if i > 0 {
            agent.advance(&format!("{gap_ms}ms"));
        }
        wait_until_shown(room, "bell", true);
        agent.advance(&format!("{pulse}ms"));
        wait_until_shown(room, "bell", false);
    }
}

/// [`room_config`]'s bell patterns: (pulses, gap) in milliseconds.
const START: (&[u32], u32) = (&[50], 0);
const END: (&[u32], u32) = (&[30, 30], 20);

/// A whole morning on the agent's simulated clock, in a few seconds: the timetable, given to the running
/// agent by a reload, rings every period's start and end on the second and switches the lights; and the
/// teacher's `bell ring` and `light` commands work.
#[test]
fn the_running_agent_rings_its_timetable_and_takes_bell_and_light_commands() {
    let room = Room::new(&room_config(""));
    let mut agent = room.start_at(&monday("06:45"));

    room.write_config(&room_config(&morning_periods()));
    let plan = room.command(&["schedule", "show", "--date", "2026-09-07"]);
    let plan_text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        plan_text.contains(&format!("Tiết 1  {} – {}", shown("07:00"), shown("07:45"))),
        "{plan_text}"
    );
    assert!(
        plan_text.contains(&format!("Tiết 5  {} – {}", shown("10:35"), shown("11:20"))),
        "{plan_text}"
    );
    agent.signal(libc::SIGHUP);
    agent.wait_for_log("timetable reloaded", Duration::from_secs(10));
    let mut timetable = Vec::new();
    for (start, end) in MORNING {
        for (time, pattern, command) in [(start, START, "ring:start"), (end, END, "ring:end")] {
            agent.advance_to(&monday(time));
            ring_through(&mut agent, &room, pattern);
            timetable.push((command.to_owned(), monday(time)));
            if time == "07:00" {
                // The lights come on after the first bell, before the clock moves on.
                wait_until_shown(&room, "lights", true);
                timetable.push(("on".to_owned(), monday("07:00")));
            }
        }
    }
    agent.advance_to(&monday("11:30"));
    wait_until_shown(&room, "lights", false);
    timetable.push(("off".to_owned(), monday("11:30")));

    let rung = std::thread::scope(|scope| {
        let ringing = scope.spawn(|| room.command(&["bell", "ring", "--pattern", "end"]));
        ring_through(&mut agent, &room, END);
        ringing.join().unwrap()
    });
    assert_eq!(
        rung.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&rung.stderr)
    );
    assert!(
        String::from_utf8_lossy(&rung.stdout).contains("Chuông `bell` đã reo kiểu `end`: done")
    );
    agent.wait_for_log("command=ring:end cause=\"TEACHER\"", Duration::from_secs(5));

    let lit = room.command(&["light", "on", "front"]);
    assert_eq!(
        lit.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&lit.stderr)
    );
    let (status, body) = http_get(room.http, "/api/actuators");
    assert_eq!(status, 200);
    let devices: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(devices["devices"][1]["name"], "lights");
    assert_eq!(devices["devices"][1]["on"], true);

    let unknown = room.command(&["bell", "ring", "--pattern", "fire-drill"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no bell pattern named `fire-drill`")
    );

    agent.signal(libc::SIGTERM);
    assert_eq!(
        agent
            .wait_exit(Duration::from_secs(10))
            .and_then(|s| s.code()),
        Some(0)
    );
    assert!(
        agent
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains("bells and lights in their safe state"))
    );

    let store = Store::open(&room.database(), Arc::new(SystemClock)).unwrap();
    let records =
        firmware_agent::store::outbox::read_after(&store.reader().unwrap(), 0, 1000).unwrap();
    // Each record is committed once its action is done: by then a later, shorter one may have been.
    let mut by_timetable: Vec<(String, String)> = records
        .iter()
        .filter_map(|event| match event.payload().unwrap() {
            Some(proto::event::Payload::Actuation(a)) if a.cause == Cause::Timetable as i32 => {
                assert_eq!(a.outcome, Outcome::Done as i32, "{a:?}");
                Some((
                    a.command,
                    event
                        .occurred_at
                        .to_zoned(jiff::tz::TimeZone::get("Asia/Ho_Chi_Minh").unwrap())
                        .strftime("%Y-%m-%dT%H:%M:%S%:z")
                        .to_string(),
                ))
            }
            _ => None,
        })
        .collect();
    by_timetable.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    timetable.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    assert_eq!(
        by_timetable, timetable,
        "every bell and switch of the morning once, on the second"
    );
    let records: Vec<(String, i32)> = actuations(&store)
        .into_iter()
        .map(|a| (a.command, a.cause))
        .collect();
    assert!(
        records.contains(&("ring:end".to_owned(), Cause::Teacher as i32)),
        "{records:?}"
    );
    assert!(
        records.contains(&("on".to_owned(), Cause::Teacher as i32)),
        "{records:?}"
    );
}

#[test]
fn a_stopped_agent_is_reported_by_bell_ring() {
    let room = Room::new(
        "[[actuators.device]]\nname = \"bell\"\nkind = \"bell\"\ndriver = { type = \"simulated\" }\n",
    );
    let output = room.command(&["bell", "ring"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot reach the agent"));
}

#[test]
fn check_config_rejects_a_malformed_timetable_with_line_and_column() {
    let timetable = |third_period: &str| {
        format!(
            "[schedule]\nbell = \"bell\"\n\n[[schedule.shifts]]\nname = \"Sáng\"\ndays = [\"mon\"]\nperiods = [\n  {{ start = \"07:00\", end = \"07:45\" }},\n  {{ start = \"08:50\", end = \"08:35\" }},\n  {third_period}\n]\n\n[[actuators.device]]\nname = \"bell\"\nkind = \"bell\"\ndriver = {{ type = \"simulated\" }}\n"
        )
    };
    let check = |room: &Room| {
        let output = Command::new(common::agent_binary())
            .arg("check-config")
            .arg(&room.config_path)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    // Lines are counted in the file as written, whatever the room's own sections take.
    let line_of = |room: &Room, needle: &str| {
        std::fs::read_to_string(&room.config_path)
            .unwrap()
            .lines()
            .position(|line| line.contains(needle))
            .unwrap()
            + 1
    };
    let room = Room::new(&timetable("{ start = \"7h30\", end = \"09:00\" },"));
    let (code, text) = check(&room);
    assert_eq!(code, Some(2));
    let bad_line = line_of(&room, "7h30");
    assert!(
        text.contains(&format!("agent.toml:{bad_line}:13: ")),
        "the malformed time is located: {text}"
    );
    assert!(text.contains("hint: write times as \"HH:MM\""), "{text}");

    room.write_config(&timetable(""));
    let (code, text) = check(&room);
    assert_eq!(code, Some(2));
    let reversed = line_of(&room, "08:50");
    assert!(text.contains(&format!("agent.toml:{reversed}:22: schedule.shifts.0.periods.1.end: period ends at 08:35 but starts at 08:50")), "{text}");
}

/// On the system clock, as a room runs: the bells' smoke test in real time, with a period a few seconds
/// from now (the morning on simulated time is [`the_running_agent_rings_its_timetable_and_takes_bell_and_light_commands`]).
#[test]
fn a_timetable_pushed_by_the_hub_is_rung_and_kept_over_the_configs_own() {
    let room = Room::new(&room_config(""));
    let agent = room.start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let endpoint = format!("http://{}", room.grpc);
    let push = |version: u64, timetable: String| {
        runtime.block_on(async {
            let mut hub = proto::sync_service_client::SyncServiceClient::connect(endpoint.clone())
                .await
                .unwrap();
            let pupil = proto::Pupil {
                personal_id: "010206001234".into(),
                full_name: "Nguyễn Thị Hoa".into(),
                class_name: "6A1".into(),
                ..Default::default()
            };
            hub.put_roster(proto::PutRosterRequest {
                version,
                pupils: vec![pupil],
                teachers: vec![],
                timetable_toml: timetable,
            })
            .await
        })
    };

    // The hub sends the periods only; the room's bell, lights and patterns stay as configured.
    let refused = push(1, "[schedule]\nbell = \"chuong-hanh-lang\"\n".to_owned()).unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused
            .message()
            .contains("timetable_toml: schedule.bell: no device named `chuong-hanh-lang`"),
        "{}",
        refused.message()
    );
    let (start, end) = (local_time_in(3), local_time_in(5));
    assert!(start < end, "run this test away from local midnight");
    let timetable = format!(
        "[schedule]\n[[schedule.shifts]]\nname = \"Sáng\"\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\n\
         periods = [{{ start = \"{start}\", end = \"{end}\" }}]\n"
    );
    push(1, timetable).unwrap();
    agent.wait_for_log(
        "timetable pushed by the hub applied",
        Duration::from_secs(10),
    );
    agent.wait_for_log(
        "command=ring:start cause=\"TIMETABLE\" outcome=\"DONE\"",
        Duration::from_secs(20),
    );
    agent.wait_for_log(
        "command=ring:end cause=\"TIMETABLE\" outcome=\"DONE\"",
        Duration::from_secs(20),
    );
    drop(agent);

    // Kept across a restart, and shown by `schedule show` as the plan in force.
    let restarted = room.start();
    assert!(
        restarted
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains("following the timetable the hub pushed"))
    );
    let plan = room.command(&["schedule", "show"]);
    let plan_text = String::from_utf8_lossy(&plan.stdout);
    assert!(plan_text.contains("phiên bản 1"), "{plan_text}");
    assert!(
        plan_text.contains(&format!("Tiết 1  {} – {}", shown(&start), shown(&end))),
        "{plan_text}"
    );
}

/// A room whose bell (1 s at most) and light are Tasmota devices on the broker at `port`.
fn mqtt_room_config(port: u16) -> String {
    format!(
        r#"
        [schedule.patterns.start]
        pulses_ms = [500]
        [schedule.patterns.end]
        pulses_ms = [300, 300]
        [actuators.mqtt]
        host = "127.0.0.1"
        port = {port}
        confirm_timeout_ms = 1000
        [[actuators.device]]
        name = "bell"
        kind = "bell"
        max_on_seconds = 1
        driver = {{ type = "mqtt", flavor = "tasmota", topic = "bell_p101" }}
        [[actuators.device]]
        name = "lights"
        kind = "light"
        zone = "front"
        driver = {{ type = "mqtt", flavor = "tasmota", topic = "light_p101" }}
        "#
    )
}

/// From an async test: the room's one-shot command, off the runtime's threads.
async fn command(room: &Arc<Room>, args: &'static [&'static str]) -> std::process::Output {
    let room = room.clone();
    tokio::task::spawn_blocking(move || room.command(args))
        .await
        .unwrap()
}

/// From an async test: GETs `path` until `holds` is true of its JSON body; panics with the last body after 10 s.
async fn wait_for_json(
    room: &Arc<Room>,
    path: &'static str,
    holds: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let address = room.http;
        let (_, body) = tokio::task::spawn_blocking(move || http_get(address, path))
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        if holds(&json) {
            return json;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{path} never held: {json}"
        );
        // Checked every 20 ms, as the browser tests check their conditions.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn device<'a>(devices: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_shows_what_its_devices_report_and_an_offline_device_degrades_healthz() {
    let broker = Mosquitto::start();
    let _bell = simulated_tasmota(broker.port, "bell_p101").await;
    let _light = simulated_tasmota(broker.port, "light_p101").await;
    let room = Arc::new(Room::new(&mqtt_room_config(broker.port)));
    let _agent = room.start_async("connected to the MQTT broker").await;

    let lit = command(&room, &["light", "on", "front"]).await;
    assert_eq!(
        lit.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&lit.stderr)
    );
    wait_for_json(&room, "/api/actuators", |devices| {
        device(devices, "lights")["on"] == true
    })
    .await;

    // Someone switches the light off at the wall: the device reports it, the agent gave no command.
    publish(broker.port, "stat/light_p101/POWER", "OFF", false).await;
    let devices = wait_for_json(&room, "/api/actuators", |devices| {
        device(devices, "lights")["on"] == false
    })
    .await;
    assert_eq!(device(&devices, "lights")["online"], true, "{devices}");
    let (_, panel) = http_get(room.http, "/api/panel/state");
    let panel: serde_json::Value = serde_json::from_str(&panel).unwrap();
    assert_eq!(
        device(&panel, "lights")["on"],
        false,
        "the panel's state is the device's: {panel}"
    );

    // Home Assistant switches the bell on and nobody says OFF: its PulseTime ends it, and the room shows that.
    publish(broker.port, "classroom/TEST-01/P101/bell/set", "ON", false).await;
    wait_for_json(&room, "/api/actuators", |devices| {
        device(devices, "bell")["on"] == true
    })
    .await;
    wait_for_json(&room, "/api/actuators", |devices| {
        device(devices, "bell")["on"] == false
    })
    .await;

    // The light's last will: offline. `/healthz` says so, naming the device.
    let health = wait_for_json(&room, "/healthz", |health| {
        health["subsystems"]["device.lights"]["state"] == "ok"
    })
    .await;
    assert_eq!(health["status"], "ok", "{health}");
    publish(broker.port, "tele/light_p101/LWT", "Offline", true).await;
    let health = wait_for_json(&room, "/healthz", |health| {
        health["subsystems"]["device.lights"]["state"] == "degraded"
    })
    .await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(
        health["subsystems"]["device.lights"]["detail"]
            .as_str()
            .unwrap()
            .contains("mất kết nối"),
        "{health}"
    );
    let devices = wait_for_json(&room, "/api/actuators", |devices| {
        device(devices, "lights")["online"] == false
    })
    .await;
    assert_eq!(device(&devices, "bell")["online"], true, "{devices}");
}

/// Ten stops in a row, each counted on the broker: every MQTT device is sent `OFF` before the agent exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stop_switches_every_mqtt_device_off_before_the_agent_exits() {
    let broker = Mosquitto::start();
    let _bell = simulated_tasmota(broker.port, "bell_p101").await;
    let _light = simulated_tasmota(broker.port, "light_p101").await;
    let mut commands = listen(broker.port, "cmnd/+/POWER").await;
    let room = Arc::new(Room::new(&mqtt_room_config(broker.port)));
    for stop in 1..=10 {
        let mut agent = room.start_async("connected to the MQTT broker").await;
        let lit = command(&room, &["light", "on", "front"]).await;
        assert_eq!(
            lit.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&lit.stderr)
        );
        // Whatever the agent sent before this ON (its safe state at start) is behind us: one client's messages arrive in order.
        while commands.recv().await.unwrap()
            != ("cmnd/light_p101/POWER".to_owned(), "ON".to_owned(), false)
        {}

        agent.signal(libc::SIGTERM);
        // Waiting for the devices' OFF keeps the stop inside its promise: exit 0 in under 5 seconds.
        let exited = tokio::task::spawn_blocking(move || agent.wait_exit(Duration::from_secs(5)))
            .await
            .unwrap();
        assert_eq!(
            exited.and_then(|status| status.code()),
            Some(0),
            "stop {stop}"
        );
        let mut off = std::collections::BTreeSet::new();
        let counted = tokio::time::timeout(Duration::from_secs(5), async {
            while off.len() < 2 {
                let (topic, payload, _) = commands.recv().await.unwrap();
                if payload == "OFF" {
                    off.insert(topic);
                }
            }
        })
        .await;
        assert!(
            counted.is_ok(),
            "stop {stop}: the broker saw OFF only for {off:?}"
        );
    }
}

#[test]
fn check_config_refuses_a_bell_pattern_longer_than_the_bells_maximum() {
    let room = Room::new(
        "[schedule.patterns.fire-drill]\npulses_ms = [2000, 20000]\n\n[[actuators.device]]\nname = \"bell\"\nkind = \"bell\"\nmax_on_seconds = 5\ndriver = { type = \"simulated\" }\n",
    );
    let (code, text) = room.check_config();
    assert_eq!(code, Some(2), "{text}");
    let line = room.config_line(|line| line.contains("pulses_ms"));
    assert!(
        text.contains(&format!("agent.toml:{line}:20: schedule.patterns.fire-drill.pulses_ms.1: a pulse of 20000 ms is longer than bell `bell` may ring (5 s")),
        "{text}"
    );
    assert!(text.contains("hint: shorten the pulse"), "{text}");
}

/// A time of day as `schedule show` prints it: seconds only when there are some.
fn shown(time: &str) -> String {
    firmware_agent::schedule::config::hh_mm(time.parse().unwrap())
}
