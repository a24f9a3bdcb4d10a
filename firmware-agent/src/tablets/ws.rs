//! `GET /tablet/ws`: the live channel, a thin loop between a WebSocket and [`Lesson`].
//!
//! The loop reads frames, parses them ([`protocol::parse`]) and hands them to
//! the lesson; it writes what the lesson queued for this tablet. A bad frame
//! is answered with an `error` on this socket only.
//!
//! # Design
//! Every wait on the peer is bounded, so that a device that connects and
//! then does nothing holds no task, socket or queue for long:
//! - a connection that has not said a valid `hello` within [`HELLO_TIMEOUT`]
//!   of the upgrade is closed; the deadline is set once, so WebSocket pings
//!   and bad frames do not move it;
//! - every frame written must be taken by the peer within [`WRITE_TIMEOUT`]:
//!   a tablet that stops reading is closed, its task ends and its queue is
//!   freed;
//! - a tablet from which nothing has been heard for
//!   `tablets.heartbeat_timeout_s` (by the lesson's clock) is disconnected;
//!   what the agent sends it does not count.
//!
//! The first two bound a socket's I/O and run on tokio's timer, as
//! [`CLOSE_GRACE`] does; the heartbeat is the lesson's policy and runs on its clock.
//!
//! When the agent stops, the tablet is sent a close frame ("going away") and
//! the loop returns; it runs among the lesson's tasks, so the stop waits for
//! that frame. Connections and their end are logged at info level; single
//! messages at most at debug, so that a tablet sending thousands cannot fill
//! the disk with the log.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use axum::routing::get;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};

use super::protocol::{self, AgentMessage, ErrorCode, ProtocolError, TabletMessage};
use super::{Lesson, Outgoing};
use crate::http::error::ApiError;
use crate::store::tablets::Tablet;

/// Frames above this are refused by the WebSocket layer itself (the connection
/// closes); frames between `tablets.max_message_bytes` and this get a `too_large` error.
const HARD_FRAME_LIMIT: usize = 1024 * 1024;

/// Read and write buffers of a connection. The library's 128 KiB defaults
/// would cost a school of 400 idle tablets 100 MiB; tablets' messages are
/// small, and a larger one is still read whole, in several reads.
const SOCKET_BUFFER: usize = 8 * 1024;

/// How long a stopping agent waits for a tablet to answer its close frame.
/// A bound on a socket's I/O, not the lesson's policy: it runs on tokio's
/// timer, so that a stop under a simulated clock, which nobody moves any
/// more, still ends.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How long a new connection has to authenticate with `hello`.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the peer has to take one frame the agent writes.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

pub fn router() -> axum::Router<Arc<Lesson>> {
    axum::Router::new().route("/tablet/ws", get(upgrade))
}

/// Upgrades to the live channel; a request that is no WebSocket upgrade gets
/// the library's status with the one error shape ([`ApiError`]).
async fn upgrade(
    socket: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    State(lesson): State<Arc<Lesson>>,
) -> Result<Response, ApiError> {
    let socket = socket.map_err(|refused| {
        let detail = format!(
            "{}: connect with a WebSocket client, as the tablet page does",
            refused.body_text()
        );
        ApiError::new(
            refused.status(),
            "websocket_required",
            "Đây là kênh dành cho máy tính bảng",
            detail,
        )
    })?;
    Ok(socket
        .max_message_size(HARD_FRAME_LIMIT)
        .max_frame_size(HARD_FRAME_LIMIT)
        .read_buffer_size(SOCKET_BUFFER)
        .write_buffer_size(SOCKET_BUFFER)
        .on_upgrade(move |socket| serve(lesson, socket)))
}

/// The connection's loop, counted among the lesson's tasks from the upgrade on.
fn serve(lesson: Arc<Lesson>, socket: WebSocket) -> impl Future<Output = ()> {
    lesson
        .tasks
        .clone()
        .track_future(live_channel(lesson, socket))
}

async fn live_channel(lesson: Arc<Lesson>, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let silence = Duration::from_secs(u64::from(lesson.config().heartbeat_timeout_s));
    let limit = lesson.config().max_message_bytes;

    // Before `hello`, nothing else is accepted, and only until the deadline.
    let hello_deadline = tokio::time::sleep(HELLO_TIMEOUT);
    tokio::pin!(hello_deadline);
    let (tablet, last_command) = loop {
        let frame = tokio::select! {
            incoming = stream.next() => match incoming {
                Some(Ok(frame)) => frame,
                _ => return,
            },
            () = &mut hello_deadline => {
                tracing::debug!("no `hello` in time; connection closed");
                return;
            }
            () = lesson.shutdown.cancelled() => return going_away(sink, stream).await,
        };
        let Some(text) = text_of(frame, limit) else {
            continue;
        };
        let reply = match text.and_then(|text| protocol::parse(&text, limit)) {
            Ok(TabletMessage::Hello {
                token,
                last_command,
                ..
            }) => match lesson.authenticate(&token).await {
                Some(tablet) => break (tablet, last_command),
                None => {
                    let refusal = ProtocolError::new(
                        ErrorCode::Unauthorized,
                        "unknown or revoked token: pair this tablet again",
                    );
                    if send(&mut sink, Message::Text(refusal.to_json().into())).await {
                        let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.close()).await;
                    }
                    return;
                }
            },
            Ok(_) => ProtocolError::new(ErrorCode::OutOfOrder, "send `hello` first"),
            Err(err) => err,
        };
        if !send(&mut sink, Message::Text(reply.to_json().into())).await {
            return;
        }
    };

    let (connection, welcome, mut queue, own_queue) = lesson.connect(tablet.clone(), last_command);
    tracing::info!(tablet = %tablet.tablet_id, last_command, "tablet connected");
    let mut tablet = tablet;
    if send(&mut sink, Message::Text(welcome.into())).await {
        // Set again only when the tablet is heard, never by what the agent sends.
        let mut silent_too_long = lesson.clock.sleep(silence);
        loop {
            tokio::select! {
                outgoing = queue.recv() => match outgoing {
                    Some(Outgoing::Text(frame)) => if !send(&mut sink, Message::Text(frame.as_ref().into())).await {
                        tracing::info!(tablet = %tablet.tablet_id, "tablet not reading; disconnected");
                        break;
                    },
                    Some(Outgoing::Close(reason)) => {
                        tracing::info!(tablet = %tablet.tablet_id, reason, "closing a tablet's connection");
                        let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.close()).await;
                        break;
                    }
                    None => break,
                },
                () = &mut silent_too_long => {
                    tracing::info!(tablet = %tablet.tablet_id, "tablet silent too long; disconnected");
                    break;
                }
                () = lesson.shutdown.cancelled() => {
                    tracing::info!(tablet = %tablet.tablet_id, "the agent stops; closing a tablet's connection");
                    going_away(sink, stream).await;
                    break;
                }
                incoming = stream.next() => {
                    let Some(Ok(frame)) = incoming else { break };
                    silent_too_long = lesson.clock.sleep(silence);
                    let Some(text) = text_of(frame, limit) else { continue };
                    let reply = match text.and_then(|text| protocol::parse(&text, limit)) {
                        Ok(message) => handle(&lesson, &mut tablet, message, &own_queue),
                        Err(err) => Some(err.to_json()),
                    };
                    if let Some(reply) = reply && !send(&mut sink, Message::Text(reply.into())).await { break }
                }
            }
        }
    }
    lesson.disconnect(connection);
    tracing::info!(tablet = %tablet.tablet_id, "tablet disconnected");
}

/// Writes one frame; false when the peer is gone or did not take it within
/// [`WRITE_TIMEOUT`], and the connection must end.
async fn send(sink: &mut SplitSink<WebSocket, Message>, frame: Message) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, sink.send(frame)).await,
        Ok(Ok(()))
    )
}

/// Tells the tablet the agent is going away and waits, a short while, for
/// its answer to the close frame, so that the frame is read before the
/// connection ends; the tablet reconnects once the agent is back.
async fn going_away(mut sink: SplitSink<WebSocket, Message>, mut stream: SplitStream<WebSocket>) {
    let close = CloseFrame {
        code: close_code::AWAY,
        reason: "the agent is stopping".into(),
    };
    if !send(&mut sink, Message::Close(Some(close))).await {
        return;
    }
    let answered = async {
        while let Some(Ok(frame)) = stream.next().await {
            if matches!(frame, Message::Close(_)) {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, answered).await;
}

/// The text of a frame; `None` for control frames the socket answers itself.
fn text_of(frame: Message, limit: usize) -> Option<Result<String, ProtocolError>> {
    match frame {
        Message::Text(text) => Some(Ok(text.as_str().to_owned())),
        Message::Binary(bytes) if bytes.len() > limit => Some(Err(ProtocolError::new(
            ErrorCode::TooLarge,
            format!("{} bytes, the limit is {limit}", bytes.len()),
        ))),
        Message::Binary(_) => Some(Err(ProtocolError::new(
            ErrorCode::Malformed,
            "send JSON as text frames",
        ))),
        Message::Ping(_) | Message::Pong(_) | Message::Close(_) => None,
    }
}

/// One message from an authenticated tablet; the reply, if any.
fn handle(
    lesson: &Arc<Lesson>,
    tablet: &mut Tablet,
    message: TabletMessage,
    own_queue: &tokio::sync::mpsc::WeakSender<Outgoing>,
) -> Option<String> {
    let result = match message {
        TabletMessage::Hello { .. } => Err(ProtocolError::new(
            ErrorCode::OutOfOrder,
            "already said hello on this connection",
        )),
        TabletMessage::Ping => return Some(AgentMessage::Pong.to_json()),
        TabletMessage::Ack { id } => lesson.ack(&tablet.tablet_id, id),
        TabletMessage::Answer {
            question,
            choices,
            text,
        } => {
            // The teacher may have bound the tablet to a pupil since it connected.
            if let Some(current) = lesson.authenticated_copy(&tablet.tablet_id) {
                *tablet = current;
            }
            lesson.answer(tablet, &question, choices, text, own_queue.clone())
        }
        TabletMessage::RaiseHand => {
            // One line per message: a tablet may send many, so at debug level only.
            tracing::debug!(tablet = %tablet.tablet_id, name = %tablet.name, "hand raised");
            if let Some(current) = lesson.authenticated_copy(&tablet.tablet_id) {
                *tablet = current;
            }
            lesson.raise_hand(tablet);
            Ok(())
        }
        TabletMessage::Status { battery, locked } => {
            lesson.update_status(&tablet.tablet_id, battery, locked);
            Ok(())
        }
        TabletMessage::Presence { visible, focused } => {
            lesson.update_presence(&tablet.tablet_id, visible, focused);
            Ok(())
        }
    };
    result.err().map(|err| err.to_json())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;
    use tokio_tungstenite::tungstenite::Message as Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    type Client = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    const PATIENCE: Duration = Duration::from_secs(10);

    /// A lesson on a manual clock, served over loopback, with one paired
    /// tablet connected and welcomed.
    async fn connected() -> (
        Arc<crate::clock::ManualClock>,
        Arc<Lesson>,
        Client,
        tempfile::TempDir,
    ) {
        let (dir, clock, store) = testing::store();
        let lesson = super::super::tests::lesson(store, clock.clone());
        lesson
            .store()
            .add_tablet(
                "tab-1",
                "Bàn 1",
                &super::super::token_hash("token-1"),
                "2026-09-07/outside",
            )
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(axum::serve(listener, router().with_state(lesson.clone())).into_future());
        let (mut client, _) = tokio_tungstenite::connect_async(format!("ws://{address}/tablet/ws"))
            .await
            .unwrap();
        client
            .send(Frame::text(r#"{"type":"hello","v":1,"token":"token-1"}"#))
            .await
            .unwrap();
        assert!(next_text(&mut client).await.contains("\"welcome\""));
        (clock, lesson, client, dir)
    }

    async fn next_text(client: &mut Client) -> String {
        match tokio::time::timeout(PATIENCE, client.next())
            .await
            .expect("a frame within the patience")
        {
            Some(Ok(Frame::Text(text))) => text.as_str().to_owned(),
            other => panic!("a text frame expected: {other:?}"),
        }
    }

    async fn ping(client: &mut Client) {
        client
            .send(Frame::text(r#"{"type":"ping"}"#))
            .await
            .unwrap();
        assert_eq!(next_text(client).await, r#"{"type":"pong"}"#);
    }

    #[tokio::test]
    async fn a_tablet_is_let_go_after_the_heartbeat_timeout_of_silence_on_the_lessons_clock() {
        let (clock, lesson, mut client, _dir) = connected().await;
        assert_eq!(lesson.config().heartbeat_timeout_s, 30);
        clock.advance(Duration::from_secs(29));
        ping(&mut client).await;
        clock.advance(Duration::from_secs(29));
        ping(&mut client).await;
        // 58 s after it connected, 29 s after its last frame: silence counts from the last frame heard.
        clock.advance(Duration::from_secs(20));
        lesson
            .issue(
                crate::tablets::protocol::Command::Unlock,
                crate::tablets::Audience::Class,
            )
            .unwrap();
        assert!(next_text(&mut client).await.contains("\"command\""));
        // 30 s after its last frame, 10 s after the agent's: what the agent sends is no heartbeat.
        clock.advance(Duration::from_secs(10));
        let ended = tokio::time::timeout(PATIENCE, client.next())
            .await
            .expect("the agent lets the silent tablet go");
        assert!(!matches!(ended, Some(Ok(Frame::Text(_)))), "{ended:?}");
        assert!(lesson.live_tablets().is_empty());
    }

    #[tokio::test]
    async fn at_the_stop_the_tablet_hears_going_away_and_the_lesson_waits_for_its_connection() {
        let (_clock, lesson, mut client, _dir) = connected().await;
        let driver = tokio::spawn(lesson.clone().run());
        lesson.shutdown.cancel();
        let close = match tokio::time::timeout(PATIENCE, client.next())
            .await
            .expect("a close frame within the patience")
        {
            Some(Ok(Frame::Close(Some(close)))) => close,
            other => panic!("a close frame expected: {other:?}"),
        };
        assert_eq!(
            (close.code, close.reason.as_str()),
            (CloseCode::Away, "the agent is stopping")
        );
        // The client answers the close as it reads on.
        assert!(matches!(
            tokio::time::timeout(PATIENCE, client.next()).await.unwrap(),
            None | Some(Err(_))
        ));
        tokio::time::timeout(PATIENCE, driver)
            .await
            .expect("the lesson drains")
            .unwrap();
        assert!(
            lesson.live_tablets().is_empty(),
            "the connection ended before the lesson returned"
        );
    }
}
