//! `firmware-agent bell ring` and `firmware-agent light on|off ZONE`: ask the
//! running agent, over its HTTP API on this machine, to act now.
//!
//! # Design
//! The agent owns the devices (a GPIO line has one owner), so these commands
//! never drive hardware themselves. The request is plain HTTP/1.1 over a
//! loopback TCP connection: the agent answers these routes only from loopback.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::config::Config;
use crate::exit::Exit;

/// How long to wait for the agent: a ring lasts a few seconds, an MQTT device may retry.
const TIMEOUT: Duration = Duration::from_secs(60);

pub fn ring(config_path: &Path, pattern: &str, device: Option<&str>) -> Exit {
    let body = json!({ "pattern": pattern, "device": device });
    call(config_path, "/api/bell/ring", &body, |answer| {
        println!(
            "Chuông `{}` đã reo kiểu `{pattern}`: {} (bell rang)",
            answer["device"].as_str().unwrap_or("?"),
            describe(answer)
        );
    })
}

pub fn light(config_path: &Path, zone: &str, on: bool) -> Exit {
    let body = json!({ "on": on });
    call(
        config_path,
        &format!("/api/lights/{zone}"),
        &body,
        |answer| {
            let verb = if on { "Bật" } else { "Tắt" };
            for actuation in answer["actuations"].as_array().into_iter().flatten() {
                println!(
                    "{verb} đèn `{}`: {} (lights {})",
                    actuation["device"].as_str().unwrap_or("?"),
                    describe(actuation),
                    if on { "on" } else { "off" }
                );
            }
        },
    )
}

fn describe(actuation: &Value) -> String {
    let outcome = actuation["outcome"].as_str().unwrap_or("?");
    let detail = actuation["detail"]
        .as_str()
        .filter(|d| !d.is_empty())
        .map(|d| format!(", {d}"))
        .unwrap_or_default();
    let record = match actuation["record"].as_str() {
        Some("queued") => format!(
            "\n  Bản ghi chưa lưu được, đang chờ trong hàng đợi (the record is queued, not yet on disk): {}",
            actuation["record_reason"].as_str().unwrap_or("?")
        ),
        _ => String::new(),
    };
    format!(
        "{outcome} in {} ms{detail}{record}",
        actuation["latency_ms"]
    )
}

fn call(config_path: &Path, path: &str, body: &Value, print: impl FnOnce(&Value)) -> Exit {
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return Exit::InvalidInput;
        }
    };
    let address = loopback_of(config.http.listen);
    match post(address, path, body) {
        Ok((status, answer)) if (200..300).contains(&status) => {
            print(&answer);
            Exit::Success
        }
        Ok((status, answer)) => {
            // An error reply: its message for people, then its English detail (see `http::error`).
            let error = match (answer["message"].as_str(), answer["detail"].as_str()) {
                (Some(message), Some(detail)) => format!("{message} ({detail})"),
                _ => answer.to_string(),
            };
            if status == 503 {
                eprintln!(
                    "Không thực hiện (not done): {error}\n  hint: free space on the data directory's disk (or make it writable); `/healthz` shows the store's state"
                );
                return Exit::Failure;
            }
            eprintln!("the agent at {address} answered {status}: {error}");
            if (400..500).contains(&status) {
                Exit::InvalidInput
            } else {
                Exit::Failure
            }
        }
        Err(err) => {
            eprintln!(
                "cannot reach the agent at {address} (http.listen): {err}\n  hint: is `firmware-agent run` running with this config? `systemctl status firmware-agent`"
            );
            Exit::Failure
        }
    }
}

/// The address to reach an agent listening on `listen` from this machine.
fn loopback_of(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// POSTs `body` as JSON; returns the status and the JSON answer.
fn post(address: SocketAddr, path: &str, body: &Value) -> std::io::Result<(u16, Value)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(3))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let invalid = |what: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not an HTTP answer: {what}"),
        )
    };
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("no status"))?;
    let (head, payload) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| invalid("no body"))?;
    let payload = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(payload)
    } else {
        payload.to_owned()
    };
    let answer = serde_json::from_str(&payload).unwrap_or(Value::String(payload));
    Ok((status, answer))
}

/// Joins the chunks of a chunked HTTP body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
