//! `province-hub import-bundle`: records carried from rooms with no network on
//! a USB stick land in PostgreSQL like pulled ones, and a signed
//! acknowledgement goes back on the stick for the room's `hub import-ack`.
//!
//! # Design
//! Each bundle is opened whole with the province's age identity and checked
//! against the room key it carries before anything is used ([`records::open`]);
//! the store then compares that key with the room's pin and lands the events
//! in one transaction ([`store::bundle`]). Only after the commit is the
//! acknowledgement written, atomically, for the outbox's stored cursor: the
//! highest seq up to which the hub holds every event, never just the bundle's
//! last. Files are imported one by one; one refused bundle does not stop the
//! others, and the exit code is the worst outcome.
//!
//! Office bundles (rosters, content) for a room are packed with
//! `classroom-bundle pack` and the province's signing key; the hub adds no
//! second tool for it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use classroom_bundle::{BundleError, ack, keys, records};
use prost::Message;
use tokio_postgres::Client;

use crate::config::{Config, RoomKey, UsbConfig, valid_code};
use crate::exit::Exit;
use crate::proto;
use crate::store::{self, bundle};

/// Why one bundle was not imported (or not acknowledged).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Bundle(#[from] BundleError),
    #[error(
        "{path}: from {room}, a room the hub has never heard of; nothing in it was used\n  hint: list the room under [[rooms]], pin its key in the room_keys table, or set usb.unknown_rooms = \"register\""
    )]
    UnknownRoom { path: PathBuf, room: RoomKey },
    #[error(
        "{path}: the event at seq {seq} cannot be read ({detail}); nothing in it was used\n  hint: the room signed it, so its software wrote it wrong: report it with the file"
    )]
    BadEvent {
        path: PathBuf,
        seq: i64,
        detail: String,
    },
    #[error(
        "{path}: cannot land it in PostgreSQL: {source}; nothing in it was used\n  hint: check that PostgreSQL runs, then import the file again"
    )]
    Store {
        path: PathBuf,
        source: store::StoreError,
    },
    #[error(
        "{path}: {added} new event(s) stored, but seq {} to {} of outbox {identity} never reached the hub, so nothing was acknowledged\n  hint: import an older bundle of this room, or let the hub pull it; the room keeps its records meanwhile",
        gap.0, gap.1
    )]
    Gap {
        path: PathBuf,
        identity: uuid::Uuid,
        added: u64,
        gap: (i64, i64),
    },
}

impl ImportError {
    fn exit(&self) -> Exit {
        match self {
            ImportError::Bundle(err) if err.is_refused_input() => Exit::InvalidInput,
            ImportError::UnknownRoom { .. } | ImportError::BadEvent { .. } => Exit::InvalidInput,
            _ => Exit::Failure,
        }
    }
}

/// One bundle imported.
#[derive(Debug)]
pub struct Imported {
    pub room: RoomKey,
    pub summary: records::Summary,
    pub landed: bundle::Landed,
    /// The acknowledgement written, when asked for.
    pub ack: Option<PathBuf>,
}

/// The province's secrets, loaded once for all the files.
struct ProvinceKeys {
    identity: age::x25519::Identity,
    signing: ed25519_dalek::SigningKey,
}

impl ProvinceKeys {
    fn load(usb: &UsbConfig) -> Result<ProvinceKeys, BundleError> {
        Ok(ProvinceKeys {
            identity: keys::load_identity(usb.identity.get_ref())?,
            signing: keys::load_signing_key(usb.signing_key.get_ref())?,
        })
    }
}

/// `province-hub import-bundle --config PATH FILE... [--ack-to DIR]`.
pub fn run(config_path: &Path, files: &[PathBuf], ack_to: Option<&Path>) -> Exit {
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return Exit::InvalidInput;
        }
    };
    let Some(usb) = config.usb.clone() else {
        eprintln!(
            "{}: no [usb] section: the hub needs the province's keys to open USB bundles\n  hint: add [usb] with identity and signing_key (config/province-hub.example.toml shows them)",
            config_path.display()
        );
        return Exit::InvalidInput;
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let keys = match ProvinceKeys::load(&usb) {
        Ok(keys) => keys,
        Err(err) => {
            eprintln!("{err}");
            return Exit::InvalidInput;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the runtime: {err}");
            return Exit::Failure;
        }
    };
    runtime.block_on(async {
        let url = config.postgres.url.get_ref();
        let timeout = Duration::from_secs(*config.postgres.connect_timeout_seconds.get_ref());
        let mut db = match store::connect(url, timeout).await {
            Ok(db) => db,
            Err(err) => {
                eprintln!(
                    "cannot reach the database at postgres.url: {err}\n  hint: check that PostgreSQL runs and that postgres.url names its host, port, user and database"
                );
                return Exit::Failure;
            }
        };
        if let Err(err) = store::migrate(&mut db).await {
            eprintln!(
                "cannot bring the database schema up to date: {err}\n  hint: the user of postgres.url must be allowed to create tables in its database"
            );
            return Exit::Failure;
        }
        let mut worst = Exit::Success;
        for file in files {
            match import(&mut db, &config, &usb, &keys, file, ack_to).await {
                Ok(imported) => println!("{}", report(file, &imported)),
                Err(err) => {
                    eprintln!("{err}");
                    worst = worse(worst, err.exit());
                }
            }
        }
        worst
    })
}

/// The worse of two outcomes: invalid input over failure over success.
fn worse(a: Exit, b: Exit) -> Exit {
    let rank = |exit| match exit {
        Exit::Success => 0,
        Exit::Failure => 1,
        Exit::InvalidInput => 2,
    };
    if rank(b) > rank(a) { b } else { a }
}

fn report(file: &Path, imported: &Imported) -> String {
    let landed = &imported.landed;
    let mut line = format!(
        "{}: {} outbox {} seq {}-{}: {} new event(s) of {}; stored up to seq {}",
        file.display(),
        imported.room,
        landed.position.identity,
        imported.summary.first_seq,
        imported.summary.last_seq,
        landed.added,
        imported.summary.events,
        landed.position.cursor,
    );
    if landed.registered_now {
        line.push_str("; room registered");
    }
    if landed.pinned_now {
        line.push_str("; room key pinned");
    }
    if let Some(ack) = &imported.ack {
        line.push_str(&format!("; acknowledgement {}", ack.display()));
    }
    line
}

/// Imports one bundle and, with `ack_to`, writes its acknowledgement there.
async fn import(
    db: &mut Client,
    config: &Config,
    usb: &UsbConfig,
    keys: &ProvinceKeys,
    file: &Path,
    ack_to: Option<&Path>,
) -> Result<Imported, ImportError> {
    let opened = records::open(file, &keys.identity, None)?;
    let header = &opened.header;
    for code in [&header.room.school_code, &header.room.room_id] {
        if !valid_code(code) {
            return Err(BundleError::NotABundle {
                path: file.to_owned(),
                detail: format!("its room code {code:?} is not a code"),
            }
            .into());
        }
    }
    let room = RoomKey {
        school_code: header.room.school_code.clone(),
        room_id: header.room.room_id.clone(),
    };
    let events = decode(file, &opened.events)?;
    let to_land = bundle::BundleToLand {
        room: &room,
        outbox_identity: header.outbox_identity,
        room_key: &header.room_signing_key,
        first_seq: opened.summary.first_seq,
        last_seq: opened.summary.last_seq,
        events: &events,
        listed: config.rooms.iter().any(|listed| listed.key() == room),
    };
    let landed = match bundle::land(db, &to_land, usb.unknown_rooms).await {
        Ok(landed) => landed,
        Err(bundle::LandError::Store(source)) => {
            return Err(ImportError::Store {
                path: file.to_owned(),
                source,
            });
        }
        Err(bundle::LandError::UnknownRoom(room)) => {
            return Err(ImportError::UnknownRoom {
                path: file.to_owned(),
                room,
            });
        }
        Err(bundle::LandError::KeyChanged { pinned, .. }) => {
            return Err(BundleError::RoomKeyChanged {
                path: file.to_owned(),
                school_code: room.school_code,
                room_id: room.room_id,
                found: header.room_signing_key.clone(),
                pinned,
            }
            .into());
        }
    };
    tracing::info!(
        room = %room,
        added = landed.added,
        cursor = landed.position.cursor,
        "USB bundle landed"
    );
    if let Some(gap) = landed.gap {
        return Err(ImportError::Gap {
            path: file.to_owned(),
            identity: header.outbox_identity,
            added: landed.added,
            gap,
        });
    }
    let ack = match ack_to {
        Some(dir) => Some(ack::write(
            dir,
            &ack::Ack {
                room: header.room.clone(),
                outbox_identity: header.outbox_identity,
                acked_seq: landed.position.cursor,
                created_at: jiff::Timestamp::now().to_string(),
            },
            &keys.signing,
        )?),
        None => None,
    };
    Ok(Imported {
        room,
        summary: opened.summary,
        landed,
        ack,
    })
}

/// The bundle's items as the agent's `Event`s, each numbered by its own seq.
fn decode(file: &Path, items: &[(i64, Vec<u8>)]) -> Result<Vec<proto::Event>, ImportError> {
    items
        .iter()
        .map(|(seq, bytes)| {
            let bad = |detail: String| ImportError::BadEvent {
                path: file.to_owned(),
                seq: *seq,
                detail,
            };
            let event = proto::Event::decode(bytes.as_slice())
                .map_err(|err| bad(format!("not a protobuf Event: {err}")))?;
            if event.seq != *seq {
                return Err(bad(format!("it says it is seq {}", event.seq)));
            }
            Ok(event)
        })
        .collect()
}
