//! HTTPS for browsers: the room's certificate, issued by a certificate
//! authority (CA) that IT staff install once on the school's tablets and
//! laptops, so that the browser client and the teacher's laptop reach the
//! agent over TLS without pinning anything.
//!
//! # Design
//! - **A school-local CA** ([`ca`]) for schools without a provincial hub:
//!   `firmware-agent tls init-ca` makes an ECDSA P-256 CA valid for 20 years
//!   whose name constraints permit only `.local` names, `localhost` and
//!   private, loopback and link-local addresses, so a stolen CA key cannot
//!   vouch for a bank's web site on the devices that trust it.
//!   `firmware-agent tls issue` makes a room's certificate (its mDNS name,
//!   its addresses and `localhost`) valid for 398 days. Keys are written 0600
//!   in 0700 directories.
//! - **Serving** ([`room`]): `http.tls_cert` and `http.tls_key` name the
//!   room's certificate and key (PEM); check-config refuses a missing file or
//!   a key that is not the certificate's. With them set, every route is
//!   served over TLS on `http.tls_listen`, and `http.listen` only redirects
//!   ([`redirect`]): a token, a pairing code or a PIN never crosses the
//!   room's Wi-Fi in clear.
//! - **Expiry** is a health matter: `/healthz` shows the subsystem `tls`
//!   degraded from 30 days before the certificate expires, checked daily on
//!   the agent's clock.
//! - **A CA run by the province** ([`pushed`]) issues the same kind of
//!   certificate and the hub pushes it with its key over its mutual-TLS
//!   channel (`PutCertificate`); it is checked, kept in `<data_dir>/tls/`,
//!   and served at once in place of `http.tls_cert` ([`served`]: the
//!   listener reads its certificate from a slot the push replaces).

pub mod ca;
pub mod pushed;
pub mod redirect;
pub mod room;
pub mod served;
