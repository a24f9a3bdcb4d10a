//! One link lands a room at a time.
//!
//! # Design
//! A room can reach the hub two ways at once (the hub pulls it and it dials
//! in), and a room whose link died dials again before the hub has noticed the
//! old link is gone. Two links landing one room would race for the same
//! stored cursor; the landing transaction's cursor check keeps that correct
//! (the loser rolls back), but the loser would then start again, win the next
//! race, and the two would take turns failing forever. So each room has one
//! lease, and only its holder lands:
//!
//! - a link the room dialled [`Leases::take`]s the lease: the holder's token is
//!   cancelled, and the new link lands once the holder has finished the batch
//!   it was landing and let go. The newest link wins, as the contract says
//!   ("a hub that sees a second link from the same room keeps the newer"),
//!   because a room opens a new link only when it thinks the old one is gone;
//! - a link the hub opened (a pulled room) [`Leases::wait`]s for the lease, so
//!   a room that both dials out and is pulled is pulled only while it has no
//!   link of its own up;
//! - a taker that gets the lease while a newer taker is already waiting steps
//!   aside at once (its link is stale), and a waiter that gets it while a taker
//!   is waiting queues again behind it.
//!
//! The lock is tokio's fair (first come, first served) mutex, so "newer" is the
//! order of arrival. The cursor check in `store::land_batch` stays as the
//! guard against a second hub process, which no lease in this one can see.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;
use tokio_util::sync::CancellationToken;

use crate::config::RoomKey;

/// Every room's lease.
#[derive(Debug, Default)]
pub struct Leases {
    rooms: Mutex<HashMap<RoomKey, Arc<Slot>>>,
}

#[derive(Debug, Default)]
struct Slot {
    turn: Arc<tokio::sync::Mutex<()>>,
    /// The holder's token: cancelled to ask it to let go.
    holder: Mutex<Option<CancellationToken>>,
    /// Takers that asked for the lease and do not hold it yet.
    takers: AtomicUsize,
}

/// The right to land one room, until dropped. Its token is cancelled when a
/// newer link of the room takes over (or when the hub stops): the link then
/// ends at its next wait.
#[derive(Debug)]
pub struct Lease {
    pub token: CancellationToken,
    slot: Arc<Slot>,
    _turn: OwnedMutexGuard<()>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        *self.slot.holder.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl Leases {
    fn slot(&self, room: &RoomKey) -> Arc<Slot> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        rooms.entry(room.clone()).or_default().clone()
    }

    /// The lease of `room` for a link the room opened: whoever holds it is
    /// asked to let go. `None` when a newer link of the room asked for it
    /// meanwhile. The lease's token is a child of `parent`.
    pub async fn take(&self, room: &RoomKey, parent: &CancellationToken) -> Option<Lease> {
        let slot = self.slot(room);
        slot.takers.fetch_add(1, Ordering::SeqCst);
        if let Some(holder) = slot
            .holder
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            holder.cancel();
        }
        let turn = slot.turn.clone().lock_owned().await;
        let newer_waiting = slot.takers.fetch_sub(1, Ordering::SeqCst) > 1;
        if newer_waiting {
            return None;
        }
        Some(hold(slot, turn, parent))
    }

    /// The lease of `room` for a link the hub opened, once no other link holds
    /// it or wants it. The lease's token is a child of `parent`.
    pub async fn wait(&self, room: &RoomKey, parent: &CancellationToken) -> Lease {
        let slot = self.slot(room);
        loop {
            let turn = slot.turn.clone().lock_owned().await;
            if slot.takers.load(Ordering::SeqCst) == 0 {
                return hold(slot, turn, parent);
            }
            drop(turn);
            // A taker counted itself and queues for the lock at once; let it.
            tokio::task::yield_now().await;
        }
    }
}

fn hold(slot: Arc<Slot>, turn: OwnedMutexGuard<()>, parent: &CancellationToken) -> Lease {
    let token = parent.child_token();
    *slot.holder.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.clone());
    Lease {
        token,
        slot,
        _turn: turn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> RoomKey {
        RoomKey {
            school_code: "LC-01".into(),
            room_id: "P201".into(),
        }
    }

    #[tokio::test]
    async fn a_dialled_link_takes_the_lease_from_a_pull_and_the_pull_waits_for_it() {
        let (leases, stop) = (Arc::new(Leases::default()), CancellationToken::new());
        let pulled = leases.wait(&room(), &stop).await;
        let taker = {
            let (leases, stop) = (leases.clone(), stop.clone());
            tokio::spawn(async move { leases.take(&room(), &stop).await })
        };
        pulled.token.cancelled().await;
        let next_pull = {
            let (leases, stop) = (leases.clone(), stop.clone());
            tokio::spawn(async move { leases.wait(&room(), &stop).await })
        };
        drop(pulled);
        let dialled = taker.await.unwrap().expect("no newer link asked");
        assert!(!dialled.token.is_cancelled());
        assert!(!next_pull.is_finished());
        drop(dialled);
        let pulled_again = next_pull.await.unwrap();
        assert!(!pulled_again.token.is_cancelled());
    }

    #[tokio::test]
    async fn of_two_links_waiting_the_newer_lands_and_the_older_steps_aside() {
        let (leases, stop) = (Arc::new(Leases::default()), CancellationToken::new());
        let first = leases.take(&room(), &stop).await.unwrap();
        let spawn_taker = || {
            let (leases, stop) = (leases.clone(), stop.clone());
            tokio::spawn(async move { leases.take(&room(), &stop).await })
        };
        let older = spawn_taker();
        first.token.cancelled().await;
        while leases.slot(&room()).takers.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        let newer = spawn_taker();
        while leases.slot(&room()).takers.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        drop(first);
        assert!(older.await.unwrap().is_none(), "the older link steps aside");
        assert!(newer.await.unwrap().is_some(), "the newer link lands");
    }

    #[tokio::test]
    async fn stopping_the_hub_cancels_every_lease() {
        let (leases, stop) = (Leases::default(), CancellationToken::new());
        let lease = leases.wait(&room(), &stop).await;
        stop.cancel();
        assert!(lease.token.is_cancelled());
    }
}
