//! Which Ack a link sends next, without I/O: the newest cursor PostgreSQL
//! committed, once, and never one beyond it.
//!
//! # Design
//! Batches land one after another while the Ack of an earlier one is still
//! on its way to the room, so an Ack need not be sent per batch: when the
//! previous Ack returns, one Ack of the newest committed cursor covers every
//! batch stored meanwhile (the room prunes up to the seq it is told). Fewer
//! Acks also spare the room a database write each. An Ack is due only for a
//! cursor that was reported committed ([`Acks::stored`]), so the room is never
//! told of an event the hub could still lose.
//!
//! A link also starts with an Ack when the room acknowledged less than the
//! hub holds (the hub stored a batch and the link broke before its Ack): the
//! room can then prune without waiting for a new event.

use crate::store::OutboxPosition;

/// The Acks of one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acks {
    /// The newest position PostgreSQL committed.
    stored: OutboxPosition,
    /// The seq the room holds as acknowledged (as far as this link knows).
    acked: i64,
}

impl Acks {
    /// A link resuming from `stored`, to a room that says it holds `acked` as acknowledged.
    pub fn new(stored: OutboxPosition, acked: i64) -> Acks {
        Acks { stored, acked }
    }

    /// A batch committed: the cursor is now `position`. An older position
    /// (reported late) changes nothing.
    pub fn stored(&mut self, position: OutboxPosition) {
        if position.cursor > self.stored.cursor {
            self.stored = position;
        }
    }

    /// The Ack to send now, if the room is behind what is committed.
    pub fn due(&self) -> Option<OutboxPosition> {
        (self.stored.cursor > self.acked).then_some(self.stored)
    }

    /// The room answered an Ack: it now holds `acked_seq` as acknowledged.
    pub fn acknowledged(&mut self, acked_seq: i64) {
        self.acked = self.acked.max(acked_seq);
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn at(identity: Uuid, cursor: i64) -> OutboxPosition {
        OutboxPosition { identity, cursor }
    }

    #[test]
    fn nothing_is_due_while_the_room_holds_what_is_stored() {
        let identity = Uuid::new_v4();
        assert_eq!(Acks::new(at(identity, 40), 40).due(), None);
        assert_eq!(Acks::new(at(identity, 0), 0).due(), None);
    }

    #[test]
    fn a_link_starts_by_acknowledging_what_the_room_missed() {
        let identity = Uuid::new_v4();
        let acks = Acks::new(at(identity, 40), 25);
        assert_eq!(acks.due(), Some(at(identity, 40)));
    }

    #[test]
    fn batches_stored_during_an_ack_are_covered_by_one_ack_of_the_newest() {
        let identity = Uuid::new_v4();
        let mut acks = Acks::new(at(identity, 0), 0);
        acks.stored(at(identity, 5_000));
        assert_eq!(acks.due(), Some(at(identity, 5_000)));
        // That Ack is on its way; three more batches commit meanwhile.
        acks.stored(at(identity, 10_000));
        acks.stored(at(identity, 15_000));
        acks.stored(at(identity, 20_000));
        acks.acknowledged(5_000);
        assert_eq!(acks.due(), Some(at(identity, 20_000)));
        acks.acknowledged(20_000);
        assert_eq!(acks.due(), None);
    }

    #[test]
    fn never_due_beyond_the_newest_commit() {
        let identity = Uuid::new_v4();
        let mut acks = Acks::new(at(identity, 100), 100);
        acks.stored(at(identity, 150));
        acks.stored(at(identity, 120)); // reported late: ignored
        assert_eq!(acks.due(), Some(at(identity, 150)));
        acks.acknowledged(90); // an older answer does not move the room back
        assert_eq!(acks.due(), Some(at(identity, 150)));
        acks.acknowledged(150);
        assert_eq!(acks.due(), None);
    }
}
