//! The `firmware-agent` command: parses the command line and hands over.

use std::process::ExitCode;

use clap::Parser;
use firmware_agent::cli::{
    AttendanceCommand, BellCommand, CameraCommand, Cli, Command, FaceCommand, HubCommand,
    LessonCommand, LightState, RosterCommand, ScheduleCommand, TlsCommand,
};
use firmware_agent::{commands, daemon};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let exit = match cli.command {
        Command::Run { config } => daemon::run(&config),
        Command::CheckConfig { path } => commands::check_config::run(&path),
        Command::Roster(RosterCommand::Import { file, config }) => {
            commands::roster::import(&file, &config)
        }
        Command::Roster(RosterCommand::Export { config }) => commands::roster::export(&config),
        Command::Hub(HubCommand::Pull {
            connection,
            cursor_file,
            follow,
            max_events,
            max_batch,
            outbox_identity,
        }) => {
            let options = commands::hub::PullOptions {
                cursor_file,
                follow,
                max_events,
                max_batch,
                outbox_identity,
            };
            commands::hub::pull(&connection.into(), &options)
        }
        Command::Hub(HubCommand::Status { connection }) => {
            commands::hub::status(&connection.into())
        }
        Command::Hub(HubCommand::Export { to, config }) => commands::hub::export(&config, &to),
        Command::Hub(HubCommand::ImportAck { file, config }) => {
            commands::hub::import_ack(&config, &file)
        }
        Command::Hub(HubCommand::Import { file, config }) => commands::hub::import(&config, &file),
        Command::Hub(HubCommand::Keys { config }) => commands::hub::keys(&config),
        Command::Schedule(ScheduleCommand::Show { config, date }) => {
            commands::schedule::show(&config, date)
        }
        Command::Bell(BellCommand::Ring {
            pattern,
            device,
            config,
        }) => commands::devices::ring(&config, &pattern, device.as_deref()),
        Command::Light {
            state,
            zone,
            config,
        } => commands::devices::light(&config, &zone, state == LightState::On),
        Command::Lesson(LessonCommand::Summary {
            lesson,
            out,
            config,
        }) => commands::lesson::summary(&lesson, &out, &config),
        Command::Attendance(AttendanceCommand::Export {
            period,
            format,
            output,
            config,
        }) => commands::attendance::export(&period, &format, output.as_deref(), &config),
        Command::Camera(CameraCommand::Probe {
            url,
            snapshot,
            transport,
        }) => commands::camera::probe(&url, snapshot.as_deref(), transport),
        Command::Face(FaceCommand::Enroll {
            student,
            images,
            config,
        }) => commands::face::enroll(&student, &images, &config),
        Command::Face(FaceCommand::Forget {
            student,
            reason,
            config,
        }) => commands::face::forget(&student, &reason, &config),
        Command::Face(FaceCommand::Detect { image, config }) => {
            commands::face::detect(&image, config.as_deref())
        }
        Command::Face(FaceCommand::Compare {
            first,
            second,
            config,
        }) => commands::face::compare(&first, &second, config.as_deref()),
        Command::Camera(CameraCommand::Discover(args)) => commands::camera::discover::run(args),
        Command::Tls(TlsCommand::InitCa { dir }) => commands::tls::init_ca(&dir),
        Command::Tls(TlsCommand::Issue {
            ca,
            name,
            addresses,
            out,
        }) => commands::tls::issue(&ca, &name, &addresses, &out),
    };
    exit.into()
}
