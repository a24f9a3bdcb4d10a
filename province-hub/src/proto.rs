//! The hub contract (`proto/classroom/hub/v1/sync.proto`), generated at build time.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("classroom.hub.v1");
