//! The command line: what IT staff type. The exit codes scripts rely on are
//! [`crate::exit::Exit`].

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The classroom agent: runs the room's panel, tablets, roll call, bells and
/// lights, keeps every record while offline, and serves them to the provincial hub.
///
/// Exit codes: 0 done; 1 could not be done (see the message); 2 invalid input
/// (command line, config or data file).
#[derive(Debug, Parser)]
#[command(
    name = "firmware-agent",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent in the foreground until SIGTERM or SIGINT (SIGHUP re-reads the config).
    Run {
        /// The room's config file.
        #[arg(long, short, value_name = "PATH", env = "FIRMWARE_AGENT_CONFIG")]
        config: PathBuf,
    },
    /// Check a config file and print every problem as PATH:LINE:COL; exit 0 if valid, 2 if not.
    CheckConfig {
        /// The config file to check.
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
    /// Manage the room's pupils, teachers and classes.
    #[command(subcommand)]
    Roster(RosterCommand),
    /// The room as the provincial hub sees it: pull its records, read its status, or carry them on a USB stick.
    #[command(subcommand)]
    Hub(HubCommand),
    /// The timetable: print a day's periods, bells and lights.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Ring the room's bell now, through the running agent.
    #[command(subcommand)]
    Bell(BellCommand),
    /// Switch the lights of a zone on or off now, through the running agent.
    Light {
        /// `on` or `off`.
        #[arg(value_name = "on|off")]
        state: LightState,
        /// The zone (`zone` of an [[actuators.device]] light, or its name); `all` for every light.
        #[arg(value_name = "ZONE")]
        zone: String,
        /// The room's config file (names the agent's address).
        #[arg(long, short, value_name = "PATH", env = "FIRMWARE_AGENT_CONFIG")]
        config: PathBuf,
    },
    /// The roll call's records: export a day or a month for the school office.
    #[command(subcommand)]
    Attendance(AttendanceCommand),
    /// Face recognition for the roll call: enroll and forget pupils, check photos.
    #[command(subcommand)]
    Face(FaceCommand),
    /// IP cameras for the roll call: check one before putting it in the config.
    #[command(subcommand)]
    Camera(CameraCommand),
    /// HTTPS for browsers: a school-local certificate authority and the rooms' certificates.
    #[command(subcommand)]
    Tls(TlsCommand),
    /// Lessons: a lesson's summary (roll call, answers and score per pupil) for the school office.
    #[command(subcommand)]
    Lesson(LessonCommand),
}

#[derive(Debug, Subcommand)]
pub enum LessonCommand {
    /// Write a lesson's summary as an Excel workbook (.xlsx) or CSV (.csv), by the file's extension.
    Summary {
        /// The lesson as the roll call names it, such as 2026-09-07/Sáng/1.
        #[arg(long, value_name = "ID")]
        lesson: String,
        /// The file to write: NAME.xlsx or NAME.csv.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The room's config file (names the database and the class).
        #[arg(long, short, value_name = "PATH", env = "FIRMWARE_AGENT_CONFIG")]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Make the school's certificate authority (CA) in a new directory.
    ///
    /// Writes ca.pem, to install once on every tablet and laptop, and
    /// ca-key.pem (mode 0600, directory 0700), to keep on this machine only.
    /// The CA may vouch only for `.local` names, `localhost` and private,
    /// loopback and link-local addresses, and is valid for 20 years.
    /// Exit 0: made; 1: cannot write; 2: a CA is already there.
    InitCa {
        /// The directory for the CA's files (made if missing).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Issue a room's certificate with the CA, for http.tls_cert and http.tls_key.
    ///
    /// The certificate names the room's mDNS name, its addresses and
    /// `localhost`, and is valid for 398 days; its expiry is printed.
    /// Writes room.pem and room-key.pem (mode 0600, directory 0700),
    /// replacing those there. Exit 0: issued; 1: cannot write; 2: no CA in
    /// --ca, or a name or address the CA may not vouch for.
    Issue {
        /// The CA's directory (`tls init-ca --dir`).
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The room's mDNS name, SCHOOL-ROOM.local.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// An address of the agent on the room's network; repeat for each.
        #[arg(long = "ip", value_name = "ADDRESS")]
        addresses: Vec<std::net::IpAddr>,
        /// The directory for the room's files (made if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum CameraCommand {
    /// Connect to a camera, decode one frame and print what it sends.
    ///
    /// Prints the codec, resolution, frame rate and the decoded frame's size.
    /// Exit 0: a frame was decoded; 1: the camera could not be reached or
    /// decoded (the message says why); 2: a malformed URL or snapshot name.
    Probe {
        /// The camera's stream: `rtsp://user:password@192.168.1.64:554/Streaming/Channels/101`,
        /// or an MJPEG stream over `http://` or `https://`.
        #[arg(value_name = "URL")]
        url: String,
        /// Save the decoded frame to this file (`.jpg`, `.jpeg` or `.png`), readable by its owner only.
        #[arg(long, value_name = "FILE")]
        snapshot: Option<PathBuf>,
        /// How an RTSP camera sends its packets.
        #[arg(long, value_enum, default_value = "tcp")]
        transport: crate::attendance::config::Transport,
    },
    /// Find the ONVIF cameras on the room's network and list their streams.
    Discover(crate::commands::camera::discover::DiscoverArgs),
}

#[derive(Debug, Subcommand)]
pub enum HubCommand {
    /// Print the room's events as JSON lines on stdout, then acknowledge them.
    ///
    /// Each batch is written and flushed, the cursor file saved, and only then
    /// acknowledged. Rerun with the same --cursor-file to continue where it stopped.
    Pull {
        #[command(flatten)]
        connection: HubConnectionArgs,
        /// Keeps the position between runs: read at start (missing = from the beginning), replaced after each batch.
        #[arg(long, value_name = "FILE")]
        cursor_file: Option<PathBuf>,
        /// Stay connected once caught up and print new events as they are recorded.
        #[arg(long)]
        follow: bool,
        /// Stop after this many events.
        #[arg(long, value_name = "N")]
        max_events: Option<u64>,
        /// Events per batch (the agent may send fewer; 0 lets it choose).
        #[arg(long, value_name = "N", default_value_t = 0)]
        max_batch: u32,
        /// The outbox identity the cursor belongs to (`hub status` shows it); stop, acknowledging nothing, if the agent's differs.
        #[arg(long, value_name = "UUID")]
        outbox_identity: Option<uuid::Uuid>,
    },
    /// Print the agent's identity, version, backlog, free disk and clock.
    Status {
        #[command(flatten)]
        connection: HubConnectionArgs,
    },
    /// Write every record the province has not acknowledged to a USB stick, as one bundle.
    ///
    /// The bundle is signed with the room's key and encrypted to
    /// hub.province_recipient; it is named SCHOOL.ROOM.OUTBOX.FIRST-LAST.bundle
    /// and appears whole or not at all. Nothing leaves the room's database until
    /// the province's acknowledgement is imported (hub import-ack). Exit 0:
    /// written, or nothing to export; 1: the stick is full or cannot be written
    /// (nothing was lost); 2: hub.province_recipient missing or DIR not a directory.
    Export {
        /// The directory where the stick is mounted.
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// The room's config file.
        #[arg(long, short, value_name = "PATH", env = "FIRMWARE_AGENT_CONFIG")]
        config: PathBuf,
    },
    /// Apply the province's acknowledgement file brought back on a stick.
    ///
    /// Moves the acknowledged cursor as an Ack over the network does, then
    /// prunes acknowledged records older than hub.retention_days. Exit 0:
    /// applied; 1: the database refused; 2: a file not signed by
    /// hub.province_signing_key, damaged, for another room or outbox, or
    /// acknowledging a seq the room never handed out (nothing changed).
    ImportAck {
        /// The acknowledgement (SCHOOL.ROOM.OUTBOX.ack-SEQ.ack).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The room's config file.
        #[arg(long, short, value_name = "PATH", env = "FIRMWARE_AGENT_CONFIG")]
        config: PathBuf,
    },
    /// Apply a roster (with its timetable) or content bundle the province's office packed for this room.
    ///
    /// Checked as a push from the hub is: encrypted to this room, signed by
    /// hub.province_signing_key, every row valid, a roster version newer than
    /// the one in force. Exit 0: applied; 1: could not be written; 2: refused
    /// (nothing changed).
    Import {
        /// The office bundle (SCHOOL.ROOM.KIND-NAME.office).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The room's config file.
        #[arg(long, short, value_name = "PATH", env = "FIRMWARE_AGENT_CONFIG")]
        config: PathBuf,
    },
    /// Print the room's public keys for USB bundles (made on first need), for the province to pin.
    Keys {
        /// The room's config file.
        #[arg(long, short, value_name = "PATH", env = "FIRMWARE_AGENT_CONFIG")]
        config: PathBuf,
    },
}

/// How to reach a room's agent.
#[derive(Debug, clap::Args)]
pub struct HubConnectionArgs {
    /// The agent's gRPC address: http://HOST:PORT (plaintext) or https://HOST:PORT (mutual TLS).
    #[arg(long, value_name = "URL")]
    pub endpoint: String,
    /// The CA certificate (PEM) that signed the agent's certificate; needed for https://.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// This client's certificate (PEM), signed by a CA the agent trusts (hub.client_ca).
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Ask the agent to gzip its responses (for slow links).
    #[arg(long)]
    pub gzip: bool,
}

impl From<HubConnectionArgs> for crate::commands::hub::Connection {
    fn from(args: HubConnectionArgs) -> Self {
        Self {
            endpoint: args.endpoint,
            ca: args.ca,
            cert: args.cert,
            key: args.key,
            gzip: args.gzip,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Print one day's plan: the kind of day, its periods, and every bell and light switch.
    Show {
        /// The room's config file.
        #[arg(long, short, value_name = "PATH", env = "FIRMWARE_AGENT_CONFIG")]
        config: PathBuf,
        /// The day (default: today in the room's time zone).
        #[arg(long, value_name = "YYYY-MM-DD")]
        date: Option<jiff::civil::Date>,
    },
}

#[derive(Debug, Subcommand)]
pub enum BellCommand {
    /// Ring a bell pattern (default `start`) on the room's bell, as the teacher at the panel would.
    Ring {
        /// A pattern of [schedule.patterns], such as `start` or `end`.
        #[arg(long, value_name = "NAME", default_value = "start")]
        pattern: String,
        /// Which bell, when the room has several (default: the first bell).
        #[arg(long, value_name = "NAME")]
        device: Option<String>,
        /// The room's config file (names the agent's address).
        #[arg(long, short, value_name = "PATH", env = "FIRMWARE_AGENT_CONFIG")]
        config: PathBuf,
    },
}

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LightState {
    On,
    Off,
}

#[derive(Debug, Subcommand)]
pub enum AttendanceCommand {
    /// Write a day's or a month's marks as an Excel workbook or CSV (Vietnamese headings).
    Export {
        /// A day (YYYY-MM-DD) or a month (YYYY-MM), in the room's time zone.
        #[arg(long, value_name = "PERIOD")]
        period: String,
        /// `xlsx` or `csv`.
        #[arg(long, default_value = "xlsx", value_parser = ["xlsx", "csv"])]
        format: String,
        /// Where to write the file (default: diem-danh-PERIOD.FORMAT in the current directory).
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// The room's config file (names the database).
        #[arg(long, short, value_name = "PATH", env = "FIRMWARE_AGENT_CONFIG")]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum FaceCommand {
    /// Enroll a pupil from photos: one template per accepted photo; each refused photo says why.
    ///
    /// Only pupils whose face consent is recorded in the roster can be enrolled.
    /// Photos are not kept. Exit 0 when at least one photo was enrolled, 2 when none was.
    Enroll {
        /// The pupil's 12-digit personal ID (mã định danh).
        #[arg(long, value_name = "PERSONAL_ID")]
        student: String,
        /// Photos of the pupil alone, facing the camera (JPEG, PNG, BMP or WebP).
        #[arg(value_name = "IMAGE", required = true)]
        images: Vec<PathBuf>,
        /// The room's config file (names the database and the models).
        #[arg(long, short, value_name = "PATH", env = "FIRMWARE_AGENT_CONFIG")]
        config: PathBuf,
    },
    /// Erase every face template of a pupil and record the erasure for the hub.
    Forget {
        /// The pupil's 12-digit personal ID.
        #[arg(long, value_name = "PERSONAL_ID")]
        student: String,
        /// Why, as recorded for the hub (such as "parent's request").
        #[arg(long, default_value = "request")]
        reason: String,
        /// The room's config file (names the database).
        #[arg(long, short, value_name = "PATH", env = "FIRMWARE_AGENT_CONFIG")]
        config: PathBuf,
    },
    /// Print the faces found in a photo as JSON: box, score, five landmarks and liveness score each.
    Detect {
        /// The photo (JPEG, PNG, BMP or WebP).
        #[arg(value_name = "IMAGE")]
        image: PathBuf,
        /// A room config whose [attendance] section names the models (optional).
        #[arg(long, short, value_name = "PATH", env = "FIRMWARE_AGENT_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Compare the main faces of two photos: similarity and verdict as JSON.
    ///
    /// Exit 0: the same person; 1: different people; 2: an error (unreadable file, no face).
    Compare {
        /// The first photo; its largest face is compared.
        #[arg(value_name = "IMAGE_A")]
        first: PathBuf,
        /// The second photo; its largest face is compared.
        #[arg(value_name = "IMAGE_B")]
        second: PathBuf,
        /// A room config whose [attendance] section names the models and the threshold (optional).
        #[arg(long, short, value_name = "PATH", env = "FIRMWARE_AGENT_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RosterCommand {
    /// Import pupils and teachers from a UTF-8 CSV file, all rows or none.
    ///
    /// Header: role,personal_id,full_name,class,face_consent,learning_data_consent,consent_date
    Import {
        /// The CSV file (Excel: "CSV UTF-8").
        #[arg(value_name = "FILE.csv")]
        file: PathBuf,
        /// The room's config file (names the database).
        #[arg(long, short, value_name = "PATH", env = "FIRMWARE_AGENT_CONFIG")]
        config: PathBuf,
    },
    /// Print the roster as CSV in the import format (edit it and import it back).
    Export {
        /// The room's config file (names the database).
        #[arg(long, short, value_name = "PATH", env = "FIRMWARE_AGENT_CONFIG")]
        config: PathBuf,
    },
}
