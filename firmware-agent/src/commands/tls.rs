//! `firmware-agent tls init-ca` and `tls issue`: the school-local CA and the
//! room certificates it issues (see [`crate::tls`]).

use std::net::IpAddr;
use std::path::Path;

use crate::exit::Exit;
use crate::tls::ca::{self, CaError, Written};

pub fn init_ca(dir: &Path) -> Exit {
    finish(ca::init_ca(dir, jiff::Timestamp::now()), |written| {
        println!(
            "CA made: install {} on every tablet and laptop of the school (valid until {}); keep {} on this machine only",
            written.certificate.display(),
            written.expires,
            written.key.display()
        )
    })
}

pub fn issue(ca_dir: &Path, name: &str, addresses: &[IpAddr], out: &Path) -> Exit {
    let issued = ca::issue(ca_dir, name, addresses, out, jiff::Timestamp::now());
    finish(issued, |written| {
        println!(
            "certificate for {name} issued: http.tls_cert = \"{}\", http.tls_key = \"{}\"",
            written.certificate.display(),
            written.key.display()
        );
        println!("expires {}: issue a new one before then", written.expires);
    })
}

fn finish(result: Result<Written, CaError>, report: impl FnOnce(&Written)) -> Exit {
    match result {
        Ok(written) => {
            report(&written);
            Exit::Success
        }
        Err(err) => {
            eprintln!("{err}");
            if err.is_input() {
                Exit::InvalidInput
            } else {
                Exit::Failure
            }
        }
    }
}
