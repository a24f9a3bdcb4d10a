//! The figures issue "bells and lights" names, each beside its baseline:
//! - real-clock lateness of a timetable action, from the planned instant to the
//!   simulated relay's rising edge, through the agent's own scheduler loop
//!   (aim: <= 50 ms, never early); baseline: a bare tokio timer to the same instants;
//! - MQTT command to confirmed state through a local mosquitto and a simulated
//!   Tasmota device (aim: p99 <= 20 ms); baseline: a bare client publishing the
//!   same command and waiting for the same state message.
//!
//! Run with `cargo bench -p firmware-agent --bench actuators`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use firmware_agent::actuators::Actuator;
use firmware_agent::actuators::config::DriverConfig;
use firmware_agent::actuators::mqtt::{MqttLink, MqttSwitch};
use firmware_agent::agent::Agent;
use firmware_agent::clock::{Clock, SystemClock};
use firmware_agent::config::Config;
use firmware_agent::health::Health;
use firmware_agent::store::Store;
use jiff::{SignedDuration, Timestamp};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

const ZONE: &str = "Asia/Ho_Chi_Minh";
const SCHEDULED_SAMPLES: i64 = 30;
const MQTT_SAMPLES: usize = 500;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        lateness().await;
        mqtt().await;
    });
}

/// Milliseconds, sorted.
struct Samples(Vec<f64>);

impl Samples {
    fn new(mut values: Vec<f64>) -> Samples {
        values.sort_by(f64::total_cmp);
        Samples(values)
    }

    fn quantile(&self, q: f64) -> f64 {
        self.0[((self.0.len() - 1) as f64 * q).round() as usize]
    }

    fn line(&self, what: &str) -> String {
        format!(
            "{what:<44} n={:<4} min {:>7.2} ms  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
            self.0.len(),
            self.0[0],
            self.quantile(0.5),
            self.quantile(0.99),
            self.0[self.0.len() - 1]
        )
    }
}

fn millis(span: SignedDuration) -> f64 {
    span.as_secs_f64() * 1000.0
}

async fn lateness() {
    let zone = jiff::tz::TimeZone::get(ZONE).unwrap();
    // The first bell two seconds from now, on a whole second; one every second after it.
    let first = Timestamp::from_second(Timestamp::now().as_second() + 2).unwrap();
    let periods: Vec<String> = (0..SCHEDULED_SAMPLES / 2)
        .map(|i| {
            let start = first
                .checked_add(SignedDuration::from_secs(i * 2))
                .unwrap()
                .to_zoned(zone.clone());
            let end = first
                .checked_add(SignedDuration::from_secs(i * 2 + 1))
                .unwrap()
                .to_zoned(zone.clone());
            format!(
                "{{ start = \"{}\", end = \"{}\" }}",
                start.strftime("%H:%M:%S"),
                end.strftime("%H:%M:%S")
            )
        })
        .collect();
    let source = format!(
        "[room]\nschool_code = \"BENCH\"\nroom_id = \"P1\"\ntimezone = \"{ZONE}\"\n\
         [schedule]\nbell = \"bell\"\n[schedule.patterns.start]\npulses_ms = [20]\n[schedule.patterns.end]\npulses_ms = [20]\n\
         [[schedule.shifts]]\nname = \"bench\"\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\nperiods = [{}]\n\
         [[actuators.device]]\nname = \"bell\"\nkind = \"bell\"\ndriver = {{ type = \"simulated\" }}\n",
        periods.join(", ")
    );
    let config =
        Config::parse(Path::new("bench.toml"), &source).expect("the bench's config is valid");
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Arc::new(Store::open(&dir.path().join("agent.sqlite3"), clock.clone()).unwrap());
    let shutdown = CancellationToken::new();
    let (controller, mqtt) =
        firmware_agent::actuators::runner::open(&config, store.clone(), clock.clone()).unwrap();
    let pins = controller.pins().clone();
    let (config, _) = watch::channel(Arc::new(config));
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .build_recorder()
        .handle();
    let agent = Arc::new(Agent {
        config,
        store,
        health: Health::new(clock.clone()),
        clock,
        metrics,
        actuators: controller.clone(),
        attendance: Default::default(),
        lan_certificate: None,
        shutdown,
    });
    let runner = tokio::spawn(firmware_agent::actuators::runner::run(
        agent.clone(),
        controller,
        mqtt,
    ));

    // Baseline: a bare timer to each of the same instants, in the same runtime.
    let baseline = tokio::spawn(async move {
        let mut late = Vec::new();
        for i in 0..SCHEDULED_SAMPLES {
            let at = first.checked_add(SignedDuration::from_secs(i)).unwrap();
            let wait = Timestamp::now().duration_until(at);
            if wait.is_positive() {
                tokio::time::sleep(wait.unsigned_abs()).await;
            }
            late.push(millis(Timestamp::now().duration_since(at)));
        }
        late
    });

    let mut changes = pins.subscribe();
    let rising = |pins: &firmware_agent::actuators::relay::SimulatedPinBank| {
        pins.history("bell")
            .windows(2)
            .filter(|w| !w[0].1 && w[1].1)
            .count()
    };
    while rising(&pins) < SCHEDULED_SAMPLES as usize {
        changes.changed().await.unwrap();
    }
    agent.shutdown.cancel();
    runner.await.unwrap();
    let edges: Vec<Timestamp> = pins
        .history("bell")
        .windows(2)
        .filter(|w| !w[0].1 && w[1].1)
        .map(|w| w[1].0)
        .collect();
    let late: Vec<f64> = edges
        .iter()
        .enumerate()
        .map(|(i, edge)| {
            millis(
                edge.duration_since(
                    first
                        .checked_add(SignedDuration::from_secs(i as i64))
                        .unwrap(),
                ),
            )
        })
        .collect();
    let early = late.iter().filter(|ms| **ms < 0.0).count();
    println!(
        "{}",
        Samples::new(baseline.await.unwrap()).line("baseline: bare tokio timer lateness")
    );
    println!(
        "{}",
        Samples::new(late).line("timetable action to relay edge lateness")
    );
    println!("  early actuations: {early} (aim: 0); aim: lateness <= 50 ms");
}

/// A broker of the bench's own on a loopback port, ended by its PID.
struct Mosquitto {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    fn start() -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(&config, format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\nlog_dest stderr\n")).unwrap();
        let binary = if Path::new("/usr/sbin/mosquitto").exists() {
            "/usr/sbin/mosquitto"
        } else {
            "mosquitto"
        };
        let mut child = Command::new(binary)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mosquitto is installed");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        while !lines
            .next()
            .expect("mosquitto started")
            .unwrap()
            .contains("running")
        {}
        std::thread::spawn(move || lines.for_each(drop));
        Mosquitto {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the PID of the broker this bench started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// A client connection that sends each packet at once, as the agent's does.
fn connect(id: &str, port: u16) -> (AsyncClient, rumqttc::EventLoop) {
    let (client, mut event_loop) = AsyncClient::new(MqttOptions::new(id, "127.0.0.1", port), 64);
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    event_loop.set_network_options(network);
    (client, event_loop)
}

/// A Tasmota device answering POWER commands; returns once subscribed.
async fn simulated_tasmota(port: u16, topic: &'static str) {
    let (client, mut event_loop) = connect("tasmota", port);
    let (ready_tx, mut ready) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = event_loop.poll().await {
            match event {
                Event::Incoming(Packet::ConnAck(_)) => client
                    .subscribe(format!("cmnd/{topic}/POWER"), QoS::AtLeastOnce)
                    .await
                    .unwrap(),
                Event::Incoming(Packet::SubAck(_)) => drop(ready_tx.send(())),
                Event::Incoming(Packet::Publish(p)) => {
                    client
                        .publish(
                            format!("stat/{topic}/POWER"),
                            QoS::AtLeastOnce,
                            false,
                            p.payload.to_vec(),
                        )
                        .await
                        .unwrap();
                }
                _ => {}
            }
        }
    });
    ready.recv().await.unwrap();
}

async fn mqtt() {
    let broker = Mosquitto::start();
    simulated_tasmota(broker.port, "bench_switch").await;

    // Baseline: a bare client, command out, state back.
    let (client, mut event_loop) = connect("baseline", broker.port);
    client
        .subscribe("stat/bench_switch/POWER", QoS::AtLeastOnce)
        .await
        .unwrap();
    let (state_tx, mut states) = mpsc::unbounded_channel();
    let (ready_tx, mut ready) = mpsc::unbounded_channel();
    let pump = tokio::spawn(async move {
        while let Ok(event) = event_loop.poll().await {
            match event {
                Event::Incoming(Packet::SubAck(_)) => drop(ready_tx.send(())),
                Event::Incoming(Packet::Publish(p)) => drop(state_tx.send(p.payload.to_vec())),
                _ => {}
            }
        }
    });
    ready.recv().await.unwrap();
    let mut baseline = Vec::new();
    for i in 0..MQTT_SAMPLES {
        let payload = if i % 2 == 0 { "ON" } else { "OFF" };
        let started = Instant::now();
        client
            .publish("cmnd/bench_switch/POWER", QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
        while states.recv().await.unwrap() != payload.as_bytes() {}
        baseline.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    pump.abort();

    let source = format!(
        "[room]\nschool_code = \"BENCH\"\nroom_id = \"P1\"\n[actuators.mqtt]\nhost = \"127.0.0.1\"\nport = {}\ndiscovery_prefix = \"\"\n\
         [[actuators.device]]\nname = \"switch\"\nkind = \"switch\"\ndriver = {{ type = \"mqtt\", flavor = \"tasmota\", topic = \"bench_switch\" }}\n",
        broker.port
    );
    let config = Config::parse(Path::new("bench.toml"), &source).unwrap();
    let shutdown = CancellationToken::new();
    let broker_config = config.actuators.mqtt.clone().unwrap();
    let (link, _commands, task) = MqttLink::start(
        &broker_config,
        &config.room,
        &config.actuators.device,
        shutdown.clone(),
        Arc::new(SystemClock),
    );
    link.subscribe_connected().wait_for(|up| *up).await.unwrap();
    let DriverConfig::Mqtt(device) = &config.actuators.device[0].driver else {
        unreachable!()
    };
    let switch = MqttSwitch::new("switch", link, device, &broker_config);
    let mut agent = Vec::new();
    let mut unconfirmed = 0;
    for i in 0..MQTT_SAMPLES {
        let started = Instant::now();
        match switch.switch(i % 2 == 0).await {
            Ok(_) => agent.push(started.elapsed().as_secs_f64() * 1000.0),
            Err(_) => unconfirmed += 1,
        }
    }
    shutdown.cancel();
    let _ = task.await;
    println!(
        "{}",
        Samples::new(baseline).line("baseline: bare client command to state")
    );
    println!(
        "{}",
        Samples::new(agent).line("agent MQTT command to confirmed state")
    );
    println!("  unconfirmed: {unconfirmed}; aim: p99 <= 20 ms");
}
