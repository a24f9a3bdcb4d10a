//! `PutContent`: learning material the hub pushes down, streamed into the
//! room's content store so that tablets fetch it over the LAN, never over the
//! school's 4G link.
//!
//! The gRPC stream is bridged to the content store's blocking writer chunk by
//! chunk: a large video is never held in memory whole, and a push cut off
//! half-way leaves the store as it was.

use std::sync::Arc;

use tokio_stream::StreamExt;
use tonic::{Status, Streaming};

use crate::agent::Agent;
use crate::proto::{PutContentChunk, PutContentResponse};
use crate::tablets::content::{ContentError, content_dir, store_pushed};

/// Chunks buffered between the network and the disk.
const IN_FLIGHT: usize = 4;

pub async fn receive(
    agent: Arc<Agent>,
    mut chunks: Streaming<PutContentChunk>,
) -> Result<PutContentResponse, Status> {
    let first = chunks.next().await.ok_or_else(|| {
        Status::invalid_argument("an empty PutContent stream: the first chunk names the file")
    })??;
    let sha256: [u8; 32] = first.sha256.as_slice().try_into().map_err(|_| {
        Status::invalid_argument(format!(
            "`{}`: sha256 must be 32 bytes, not {}",
            first.name,
            first.sha256.len()
        ))
    })?;
    let (name, size) = (first.name.clone(), first.size);
    let config = agent.config();
    let dir = content_dir(&config.storage.data_dir, &config.tablets);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<u8>, String>>(IN_FLIGHT);
    let writer = {
        let name = name.clone();
        tokio::task::spawn_blocking(move || store_pushed(&dir, &name, size, sha256, rx))
    };
    let mut next = Some(Ok(first.data));
    while let Some(chunk) = next {
        let tx = tx.clone();
        // The writer may have stopped early (a bad name, too many bytes): then stop sending.
        let sent = tokio::task::spawn_blocking(move || tx.send(chunk).is_ok())
            .await
            .unwrap_or(false);
        if !sent {
            break;
        }
        next = chunks.next().await.map(|item| {
            item.map(|chunk| chunk.data)
                .map_err(|status| status.message().to_owned())
        });
    }
    drop(tx);
    let stored = writer
        .await
        .map_err(|err| Status::internal(format!("the content writer failed: {err}")))?;
    match stored {
        Ok(stored) => {
            tracing::info!(name = %stored.name, size = stored.size, "content pushed by the hub stored");
            Ok(PutContentResponse {
                name: stored.name,
                size: stored.size,
            })
        }
        Err(err @ (ContentError::BadName(_) | ContentError::WrongSize { .. })) => {
            Err(Status::invalid_argument(err.to_string()))
        }
        Err(err @ ContentError::WrongChecksum { .. }) => Err(Status::data_loss(err.to_string())),
        Err(err @ ContentError::Io { .. }) => Err(Status::unavailable(err.to_string())),
    }
}
