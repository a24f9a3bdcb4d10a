//! `classroom-bundle`: the province's side of the USB stick, for the district
//! office and for tests, until the hub imports bundles itself: make the
//! province's keys, open a room's records bundle, write its acknowledgement,
//! pack a roster or content file for a room.
//!
//! Exit codes: 0 done; 1 could not be done (a file that cannot be read or
//! written, a full stick); 2 invalid input (command line, a refused bundle:
//! damaged, truncated, for another key, signed by another room key).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine;
use clap::{Parser, Subcommand};
use classroom_bundle::office::Payload;
use classroom_bundle::pins::{Pinned, Pins};
use classroom_bundle::{BundleError, Room, ack, keys, office, records};

/// The province's side of the classroom USB bundles.
///
/// Exit codes: 0 done; 1 could not be done (reading or writing failed, a full
/// stick); 2 invalid input (command line, or a bundle refused: damaged,
/// truncated, for another key, signed by another room key).
#[derive(Debug, Parser)]
#[command(name = "classroom-bundle", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make the province's keys in DIR: province.age and province-signing.key (0600).
    ///
    /// Prints the two public keys as the rooms' config names them
    /// (hub.province_recipient, hub.province_signing_key).
    Keygen {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Open a room's records bundle: check it whole, print its header and summary as JSON.
    ///
    /// With --events, one more JSON line per event: its seq and its bytes
    /// (the agent's protobuf Event) in base64.
    Open {
        #[arg(value_name = "BUNDLE")]
        bundle: PathBuf,
        #[command(flatten)]
        trust: Trust,
        /// Print every event.
        #[arg(long)]
        events: bool,
    },
    /// Write the acknowledgement of a records bundle into DIR, for the room's `hub import-ack`.
    ///
    /// The bundle is opened and checked first; the acknowledgement names its
    /// room and outbox identity and its last seq (or --seq).
    Ack {
        #[arg(value_name = "BUNDLE")]
        bundle: PathBuf,
        #[command(flatten)]
        trust: Trust,
        /// The province's signing key file (province-signing.key).
        #[arg(long, value_name = "FILE")]
        signing_key: PathBuf,
        /// Acknowledge up to this seq instead of the bundle's last.
        #[arg(long, value_name = "SEQ")]
        seq: Option<i64>,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Pack a roster push or a content file for one room, for its `hub import`.
    Pack {
        /// What FILE is: a roster push (protobuf PutRosterRequest, as the hub sends) or a content file.
        #[arg(long, value_enum)]
        payload: Payload,
        /// The payload.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// The content file's name in the room's store (default: FILE's name; `roster` for a roster).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        #[arg(long, value_name = "CODE")]
        school: String,
        #[arg(long, value_name = "ID")]
        room: String,
        /// The room's age recipient (its records bundles carry it as room_recipient).
        #[arg(long, value_name = "AGE1…")]
        room_recipient: String,
        /// The province's signing key file (province-signing.key).
        #[arg(long, value_name = "FILE")]
        signing_key: PathBuf,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// How a records bundle is opened and whose key it must carry.
#[derive(Debug, clap::Args)]
struct Trust {
    /// The province's age identity file (province.age).
    #[arg(long, value_name = "FILE")]
    identity: PathBuf,
    /// The rooms' pinned signing keys: a room seen first is pinned, a room whose key differs is refused.
    #[arg(long, value_name = "FILE")]
    pins: Option<PathBuf>,
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Keygen { out } => keygen(&out),
        Command::Open {
            bundle,
            trust,
            events,
        } => open(&bundle, &trust).and_then(|opened| print_open(&opened, events)),
        Command::Ack {
            bundle,
            trust,
            signing_key,
            seq,
            out,
        } => open(&bundle, &trust).and_then(|opened| write_ack(&opened, &signing_key, seq, &out)),
        Command::Pack {
            payload,
            file,
            name,
            school,
            room,
            room_recipient,
            signing_key,
            out,
        } => pack(
            payload,
            &file,
            name,
            Room {
                school_code: school,
                room_id: room,
            },
            &room_recipient,
            &signing_key,
            &out,
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{err}");
            ExitCode::from(if err.is_refused_input() { 2 } else { 1 })
        }
    }
}

fn keygen(out: &Path) -> Result<(), BundleError> {
    std::fs::create_dir_all(out).map_err(|source| BundleError::Write {
        path: out.to_owned(),
        source,
    })?;
    let public = keys::generate_province(out)?;
    println!("# for each room's [hub] section:");
    println!("province_recipient = \"{}\"", public.recipient);
    println!("province_signing_key = \"{}\"", public.verifying_key);
    Ok(())
}

fn open(bundle: &Path, trust: &Trust) -> Result<records::Records, BundleError> {
    let identity = keys::load_identity(&trust.identity)?;
    let Some(pins_path) = &trust.pins else {
        return records::open(bundle, &identity, None);
    };
    let mut pins = Pins::load(pins_path)?;
    // The room is known only once the bundle is open.
    let opened = records::open(bundle, &identity, None)?;
    if let Some(pinned) = pins.get(&opened.header.room) {
        opened.check_room_key(bundle, pinned)?;
    }
    if pins.pin(&opened.header.room, opened.room_key)? == Pinned::FirstSight {
        eprintln!(
            "{}/{}: first bundle from this room; its key {} is now pinned in {}",
            opened.header.room.school_code,
            opened.header.room.room_id,
            opened.header.room_signing_key,
            pins_path.display()
        );
    }
    Ok(opened)
}

fn print_open(opened: &records::Records, events: bool) -> Result<(), BundleError> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let line = serde_json::json!({ "header": opened.header, "summary": opened.summary });
    let failed = |source| BundleError::Write {
        path: PathBuf::from("<stdout>"),
        source,
    };
    writeln!(out, "{line}").map_err(failed)?;
    if events {
        for (seq, bytes) in &opened.events {
            let line = serde_json::json!({
                "seq": seq,
                "event_base64": base64::engine::general_purpose::STANDARD.encode(bytes),
            });
            writeln!(out, "{line}").map_err(failed)?;
        }
    }
    out.flush().map_err(failed)
}

fn write_ack(
    opened: &records::Records,
    signing_key: &Path,
    seq: Option<i64>,
    out: &Path,
) -> Result<(), BundleError> {
    let key = keys::load_signing_key(signing_key)?;
    let ack = ack::Ack {
        room: opened.header.room.clone(),
        outbox_identity: opened.header.outbox_identity,
        acked_seq: seq.unwrap_or(opened.summary.last_seq),
        created_at: jiff::Timestamp::now().to_string(),
    };
    let path = ack::write(out, &ack, &key)?;
    println!("{}", path.display());
    Ok(())
}

fn pack(
    payload: Payload,
    file: &Path,
    name: Option<String>,
    room: Room,
    room_recipient: &str,
    signing_key: &Path,
    out: &Path,
) -> Result<(), BundleError> {
    let recipient = keys::parse_recipient(room_recipient)
        .map_err(|err| BundleError::Invalid(format!("--room-recipient: {err}")))?;
    let key = keys::load_signing_key(signing_key)?;
    let name = match (payload, name) {
        (_, Some(name)) => name,
        (Payload::Roster, None) => "roster".to_owned(),
        (Payload::Content, None) => file
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .ok_or_else(|| BundleError::Invalid("--file names no file; give --name".into()))?,
    };
    let path = office::pack(out, &room, payload, &name, file, &recipient, &key)?;
    println!("{}", path.display());
    Ok(())
}
