//! `firmware-agent run`: the daemon's life from start to a clean exit.
//!
//! # Design
//! One tokio runtime, one [`CancellationToken`]. SIGTERM and SIGINT cancel it;
//! every task watches it, finishes what it is doing and returns; the process
//! exits 0 once all tasks have returned, or after [`DRAIN_TIMEOUT`] with a
//! warning naming the stragglers' count. SIGHUP re-reads the config: a valid
//! one is published to every subsystem through a `watch` channel and applied
//! where that can be done live; an invalid one is logged and ignored.
//!
//! Start-up failures a person must fix (config, database, a port in use) are
//! reported with what, where and how to fix, and exit non-zero before READY.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent::Agent;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::exit::Exit;
use crate::health::{Health, State};
use crate::store::{Store, StoreError};
use crate::telemetry::{self, FilterHandle};

/// How long tasks get to finish after a stop signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(4);

/// Runs the agent until a stop signal.
pub fn run(config_path: &Path) -> Exit {
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            eprintln!(
                "the agent did not start: fix the config and run `firmware-agent check-config {}`",
                config_path.display()
            );
            return Exit::InvalidInput;
        }
    };
    let filter = telemetry::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("agent")
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(%err, "cannot start the async runtime");
            return Exit::Failure;
        }
    };
    let result = runtime.block_on(serve(config_path.to_owned(), config, filter));
    // Blocking tasks (inference, database) get the same grace as async ones.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => Exit::Success,
        Err(err) => {
            tracing::error!("{err}");
            Exit::Failure
        }
    }
}

/// Why the agent did not start. Those a person must fix say what, where and how.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("cannot install a signal handler: {0}")]
    Signals(std::io::Error),
    #[error(
        "the agent did not start: cannot listen on {address} ({key}): {source}\n  hint: {}",
        bind_hint(source)
    )]
    Bind {
        key: &'static str,
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("the agent did not start: {0}")]
    Store(#[from] StoreError),
    #[error("the agent did not start: {0}")]
    Hub(crate::hub::ServeError),
    #[error("the agent did not start: {0}")]
    TabletsTls(#[from] crate::tablets::tls::TlsError),
    #[error("the agent did not start: {0}\n  hint: {hint}", hint = .0.hint())]
    RoomCertificate(#[from] crate::tls::room::LoadError),
    #[error("the agent did not start: {0}")]
    Actuators(#[from] crate::actuators::controller::OpenError),
    #[error("the agent did not start: {0}")]
    SimulatedClock(#[from] crate::clock::simulated::BadStart),
    /// What the machine refused (a worker thread, the metrics recorder, a socket's address).
    #[error("{0}")]
    Machine(String),
}

async fn serve(
    config_path: PathBuf,
    config: Config,
    filter: FilterHandle,
) -> Result<(), StartError> {
    // Before anything can announce readiness: a signal that arrives early must
    // find its handler, not the default action (which for SIGHUP is to die).
    let signals = Signals::install()?;
    let simulated = crate::clock::simulated::from_env()?;
    let clock: Arc<dyn Clock> = match &simulated {
        Some(simulated) => simulated.clone(),
        None => Arc::new(SystemClock),
    };
    let database = config.database_path();
    let store_clock = clock.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&database, store_clock))
        .await
        .map_err(|err| StartError::Machine(err.to_string()))??;
    let config = crate::schedule::pushed::in_force_logged(config, &store);
    let http = TcpListener::bind(config.http.listen)
        .await
        .map_err(|source| StartError::Bind {
            key: "http.listen",
            address: config.http.listen,
            source,
        })?;
    let hub = crate::hub::bind(&config.hub)
        .await
        .map_err(|err| match err {
            crate::hub::ServeError::Bind { address, source } => StartError::Bind {
                key: "hub.listen",
                address,
                source,
            },
            other => StartError::Hub(other),
        })?;
    let dialler = crate::hub::dial_out::prepare(&config.hub)
        .map_err(|err| StartError::Hub(crate::hub::ServeError::Tls(err)))?;
    let room = &config.room;
    // One count of each peer's connections across the plain and TLS ports.
    let connections =
        crate::http::limits::Connections::new(crate::http::limits::Caps::from_config(&config.http));
    let tablets_tls = crate::tablets::tls::prepare(
        &config.tablets,
        &config.storage.data_dir,
        &room.school_code,
        &room.room_id,
        connections.clone(),
        clock.clone(),
    )
    .await?;
    // A certificate the province pushed is served in place of the school's own.
    let served = match crate::tls::pushed::load_kept(&config.storage.data_dir) {
        Some(pushed) => Some(pushed),
        None => match (&config.http.tls_cert, &config.http.tls_key) {
            (Some(certificate), Some(key)) => Some(crate::tls::room::load(certificate, key)?),
            _ => None,
        },
    };
    let browser_tls = match served {
        Some(served) => {
            let served = crate::tls::served::ServedCertificate::new(served);
            let server = served
                .server_config()
                .map_err(|err| StartError::Machine(err.to_string()))?;
            let listener = TcpListener::bind(config.http.tls_listen)
                .await
                .map_err(|source| StartError::Bind {
                    key: "http.tls_listen",
                    address: config.http.tls_listen,
                    source,
                })?;
            let listener = crate::tablets::tls::TlsListener::accepting(
                listener,
                server,
                connections.clone(),
                clock.clone(),
            )
            .map_err(|err| StartError::Machine(err.to_string()))?;
            Some((listener, served))
        }
        None => None,
    };

    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|err| StartError::Machine(err.to_string()))?;
    let store = Arc::new(store);
    let shutdown = CancellationToken::new();
    let (actuators, mqtt) = crate::actuators::runner::open(&config, store.clone(), clock.clone())?;
    let (config_tx, _) = watch::channel(Arc::new(config));
    let agent = Arc::new(Agent {
        config: config_tx,
        store,
        health: Health::new(clock.clone()),
        clock,
        metrics,
        actuators: actuators.clone(),
        attendance: Default::default(),
        shutdown,
        lan_certificate: browser_tls.as_ref().map(|(_, served)| served.clone()),
    });
    let recorder = agent.store.recorder().clone();
    agent
        .health
        .record_in(move |change| recorder.keep_now(change));
    agent.store.recorder().report_to(agent.health.clone());
    agent.health.set(
        "database",
        State::Ok,
        agent.store.path().display().to_string(),
    );

    let tasks = TaskTracker::new();
    let lesson = {
        let config = agent.config();
        crate::tablets::Lesson::new(crate::tablets::LessonParts {
            tablets: config.tablets.clone(),
            zone: jiff::tz::TimeZone::get(&config.room.timezone).unwrap_or(jiff::tz::TimeZone::UTC),
            room: agent.config.subscribe(),
            http_listen: match &browser_tls {
                Some((listener, _)) => axum::serve::Listener::local_addr(listener)
                    .map_err(|err| StartError::Machine(err.to_string()))?,
                None => config.http.listen,
            },
            https: browser_tls.is_some(),
            content_dir: crate::tablets::content::content_dir(
                &config.storage.data_dir,
                &config.tablets,
            ),
            store: agent.store.clone(),
            clock: agent.clock.clone(),
            health: agent.health.clone(),
            shutdown: agent.shutdown.clone(),
        })
    };
    tasks.spawn(lesson.clone().run());
    let http_address = http
        .local_addr()
        .map_err(|err| StartError::Machine(err.to_string()))?;
    let browser_tls = browser_tls.map(|(listener, served)| {
        tasks.spawn(crate::tls::room::watch_expiry(
            served,
            agent.health.clone(),
            agent.clock.clone(),
            agent.shutdown.clone(),
        ));
        listener
    });
    {
        let agent = agent.clone();
        tasks.spawn(async move {
            agent
                .health
                .set("http", State::Ok, format!("listening on {http_address}"));
            let served = crate::http::serve(
                http,
                connections,
                tablets_tls,
                browser_tls,
                agent.clone(),
                lesson,
            )
            .await;
            if let Err(err) = served {
                agent.health.set("http", State::Failed, err.to_string());
            }
        });
    }
    crate::hub::start(&agent, hub, dialler, &tasks);
    {
        let config = agent.config();
        let room = crate::tablets::discovery::AdvertisedRoom {
            name: config.room.name.clone(),
            school_code: config.room.school_code.clone(),
            room_id: config.room.room_id.clone(),
        };
        let (health, shutdown) = (agent.health.clone(), agent.shutdown.clone());
        tasks.spawn(crate::tablets::discovery::advertise(
            config.tablets.discovery,
            room,
            http_address,
            health,
            shutdown,
        ));
    }
    tasks.spawn(crate::actuators::runner::run(
        agent.clone(),
        actuators,
        mqtt,
    ));
    tasks.spawn(crate::attendance::service::run(agent.clone()));
    tasks.spawn(crate::panel::power::run(agent.clone()));

    if let Some(simulated) = simulated {
        tasks.spawn(crate::clock::simulated::steer_from_stdin(
            simulated,
            agent.shutdown.clone(),
        ));
    }
    tracing::info!(version = env!("CARGO_PKG_VERSION"), http = %http_address, database = %agent.store.path().display(), "agent ready; panel at http://{http_address}/");
    crate::systemd::ready(&format!("serving on {http_address}"));
    // Pings start once systemd has been told we are ready.
    tasks.spawn(crate::systemd::watchdog(agent.shutdown.clone()));

    signals.wait(&agent, &config_path, &filter).await;

    crate::systemd::stopping();
    tracing::info!("stopping: draining tasks");
    agent.shutdown.cancel();
    tasks.close();
    // On tokio's timer, not the agent's clock: a stop must end even on a
    // simulated clock that nobody moves any more.
    if tokio::time::timeout(DRAIN_TIMEOUT, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            remaining = tasks.len(),
            "tasks did not finish in time; exiting anyway"
        );
    }
    agent.store.recorder().finish().await;
    tracing::info!("stopped");
    Ok(())
}

/// The signals the daemon answers: SIGTERM and SIGINT stop it, SIGHUP reloads.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals, StartError> {
        let install = |kind| signal(kind).map_err(StartError::Signals);
        Ok(Signals {
            terminate: install(SignalKind::terminate())?,
            interrupt: install(SignalKind::interrupt())?,
            hangup: install(SignalKind::hangup())?,
        })
    }

    /// Returns on SIGTERM or SIGINT; handles SIGHUP in place.
    async fn wait(mut self, agent: &Agent, config_path: &Path, filter: &FilterHandle) {
        loop {
            tokio::select! {
                _ = self.terminate.recv() => return,
                _ = self.interrupt.recv() => return,
                _ = self.hangup.recv() => reload(agent, config_path, filter),
            }
        }
    }
}

fn reload(agent: &Agent, config_path: &Path, filter: &FilterHandle) {
    crate::systemd::reloading();
    match Config::load(config_path) {
        Err(err) => {
            tracing::error!("config reload refused, the running config stays in force:\n{err}")
        }
        Ok(new) => {
            let old = agent.config();
            for (key, changed) in [
                ("http.listen", old.http.listen != new.http.listen),
                ("hub.listen", old.hub.listen != new.hub.listen),
                (
                    "storage.data_dir",
                    old.storage.data_dir != new.storage.data_dir,
                ),
                (
                    "room.school_code",
                    old.room.school_code != new.room.school_code,
                ),
                ("room.room_id", old.room.room_id != new.room.room_id),
            ] {
                if changed {
                    tracing::warn!(
                        key,
                        "changed in the config; takes effect at the next restart"
                    );
                }
            }
            if old.log.filter != new.log.filter
                && let Err(err) = filter.set(&new.log.filter)
            {
                tracing::error!(%err, "cannot apply the new log filter");
            }
            agent
                .config
                .send_replace(Arc::new(crate::schedule::pushed::in_force_logged(
                    new,
                    &agent.store,
                )));
            tracing::info!(path = %config_path.display(), "config reloaded");
        }
    }
    crate::systemd::ready("config reloaded");
}

/// How to fix a port the agent could not listen on.
fn bind_hint(err: &std::io::Error) -> &'static str {
    match err.kind() {
        std::io::ErrorKind::AddrInUse => {
            "another program (or another agent) uses this port: stop it or change the port"
        }
        std::io::ErrorKind::PermissionDenied => {
            "ports below 1024 need privileges: use a port above 1024"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "this machine has no such address: use 0.0.0.0 or one of its own addresses"
        }
        _ => "check the address in the config",
    }
}
