//! Follow the teacher: which tablets show the teacher's material, at which
//! page, and which command turns of the past still matter.
//!
//! The teacher opens a PDF, an image or a folder of slides from the content
//! store on the panel; with one touch the class (or a group, or chosen
//! tablets) shows the same page and follows each turn, until the teacher
//! releases them to browse on their own.
//!
//! # Design
//! - One lead for the room at a time: the material, its page, and who
//!   follows. The panel shows one material, so a second audience cannot
//!   follow another page; a `follow` to another audience while one follows is
//!   refused until the teacher releases the first (a `follow` to the same
//!   audience changes the material).
//! - `page` and `release` go to whoever follows, whatever audience the panel
//!   names, as a question's stop goes to whoever it was asked of.
//! - Only the newest page matters. A tablet that connects or reconnects
//!   learns the lead from `welcome.state.follow`, never by replaying turns,
//!   so the session keeps only the newest follow command in its log of
//!   missed commands ([`coalesces`]): a lesson of 300 page turns does not
//!   push the teacher's messages out of the log. A superseded command's
//!   record for the hub is written at once with the acks it had.
//! - A state machine without I/O; [`super::session::Session`] drives it
//!   inside `issue`, under the lesson's one mutex.

use serde::Serialize;

use super::protocol::Command;
use super::session::Audience;

/// The highest page number a command may name.
pub const MAX_PAGE: u32 = 10_000;

/// What a following tablet shows: `file` of the content store at `page` (from 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Following {
    pub file: String,
    pub page: u32,
}

/// A page number out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`page` = {0} must be 1 to {MAX_PAGE}: pages are counted from 1")]
pub struct BadPage(pub u32);

/// Checks a page number given by the teacher.
pub fn page_number(page: u32) -> Result<(), BadPage> {
    if (1..=MAX_PAGE).contains(&page) {
        Ok(())
    } else {
        Err(BadPage(page))
    }
}

/// Why the lead refused a follow command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusedFollow {
    #[error("no tablet follows the teacher: give `follow` with a file first")]
    NobodyFollows,
    #[error(
        "other tablets follow the teacher already: release them first, or give `follow` to the same tablets"
    )]
    OthersFollow,
}

/// The material being followed, and by whom.
#[derive(Debug, Clone)]
struct Lead {
    shown: Following,
    followers: Audience,
}

/// The room's follow state.
#[derive(Debug, Default)]
pub struct FollowState {
    lead: Option<Lead>,
}

impl FollowState {
    /// `followers` show `file` at `page` from now on.
    pub fn start(
        &mut self,
        file: &str,
        page: u32,
        followers: &Audience,
    ) -> Result<(), RefusedFollow> {
        if self
            .lead
            .as_ref()
            .is_some_and(|lead| &lead.followers != followers)
        {
            return Err(RefusedFollow::OthersFollow);
        }
        self.lead = Some(Lead {
            shown: Following {
                file: file.to_owned(),
                page,
            },
            followers: followers.clone(),
        });
        Ok(())
    }

    /// The teacher turned to `page`; returns who follows, the turn's audience.
    pub fn turn(&mut self, page: u32) -> Result<Audience, RefusedFollow> {
        let lead = self.lead.as_mut().ok_or(RefusedFollow::NobodyFollows)?;
        lead.shown.page = page;
        Ok(lead.followers.clone())
    }

    /// The followers browse freely from now on; returns who they were.
    pub fn release(&mut self) -> Result<Audience, RefusedFollow> {
        self.lead
            .take()
            .map(|lead| lead.followers)
            .ok_or(RefusedFollow::NobodyFollows)
    }

    /// What `tablet_id` follows now, if it follows.
    pub fn for_tablet(&self, tablet_id: &str) -> Option<Following> {
        self.lead
            .as_ref()
            .filter(|lead| lead.followers.includes(tablet_id))
            .map(|lead| lead.shown.clone())
    }

    /// What the teacher leads, for the panel.
    pub fn lead(&self) -> Option<&Following> {
        self.lead.as_ref().map(|lead| &lead.shown)
    }
}

/// Whether `command` belongs to following the teacher: the newest of them
/// makes every earlier one needless for a tablet catching up.
pub fn coalesces(command: &Command) -> bool {
    matches!(
        command,
        Command::Follow { .. } | Command::Page { .. } | Command::Release
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(ids: &[&str]) -> Audience {
        Audience::Tablets {
            ids: ids.iter().map(|id| (*id).to_owned()).collect(),
            group: Some("Nhóm 1".into()),
        }
    }

    #[test]
    fn followers_see_the_newest_page_and_others_see_nothing() {
        let mut follow = FollowState::default();
        assert_eq!(follow.turn(2), Err(RefusedFollow::NobodyFollows));
        follow
            .start("toan/bai-3.pdf", 1, &group(&["t1", "t2"]))
            .unwrap();
        assert_eq!(follow.turn(2).unwrap(), group(&["t1", "t2"]));
        follow.turn(3).unwrap();
        assert_eq!(
            follow.for_tablet("t1"),
            Some(Following {
                file: "toan/bai-3.pdf".into(),
                page: 3
            })
        );
        assert_eq!(follow.for_tablet("t3"), None, "not in the group");
        assert_eq!(
            follow.start("van.pdf", 1, &Audience::Class),
            Err(RefusedFollow::OthersFollow),
            "one lead at a time"
        );
        follow.start("van.pdf", 4, &group(&["t1", "t2"])).unwrap();
        assert_eq!(follow.for_tablet("t2").unwrap().file, "van.pdf");
        assert_eq!(follow.release().unwrap(), group(&["t1", "t2"]));
        assert_eq!(follow.for_tablet("t1"), None, "released");
        assert_eq!(follow.release(), Err(RefusedFollow::NobodyFollows));
        follow.start("van.pdf", 1, &Audience::Class).unwrap();
        assert!(
            follow.for_tablet("t9").is_some(),
            "the class includes every tablet"
        );
    }

    #[test]
    fn a_tablet_catching_up_gets_the_newest_page_not_every_turn() {
        use std::collections::BTreeSet;
        use std::time::Duration;

        use crate::clock::Monotonic;
        use crate::tablets::session::{RefusedCommand, Session};

        let mut session = Session::new(Duration::from_secs(5));
        let now: jiff::Timestamp = "2026-09-07T01:00:00Z".parse().unwrap();
        let at = Monotonic::default();
        let connected: BTreeSet<String> = ["t1".to_owned(), "t2".to_owned()].into();
        let mut give = |command: Command, audience: Audience| {
            session.issue(now, at, "l1", command, audience, connected.clone())
        };
        assert_eq!(
            give(Command::Page { page: 2 }, Audience::Class),
            Err(RefusedCommand::Follow(RefusedFollow::NobodyFollows))
        );
        let follow = Command::Follow {
            file: "toan.pdf".into(),
            page: 1,
        };
        give(follow, group(&["t1"])).unwrap();
        let turn = give(Command::Page { page: 2 }, Audience::Class).unwrap();
        let newest = give(Command::Page { page: 3 }, Audience::Class).unwrap();
        let message = Command::Message {
            text: "Chú ý trang 3".into(),
        };
        let message = give(message, Audience::Class).unwrap();
        let missed: Vec<u64> = session.missed("t1", 0).iter().map(|e| e.id).collect();
        assert_eq!(
            missed,
            [newest.id, message.id],
            "only the newest turn is kept"
        );
        assert_eq!(
            session
                .missed("t2", 0)
                .iter()
                .map(|e| e.id)
                .collect::<Vec<_>>(),
            [message.id],
            "a turn goes to whoever follows, whatever audience the panel names"
        );
        assert_eq!(session.state_for("t1").follow.unwrap().page, 3);
        assert_eq!(session.state_for("t2").follow, None);
        assert!(
            session.ack("t1", turn.id).is_ok(),
            "a late ack of a superseded turn is no error"
        );
        let written: Vec<String> = session
            .take_records()
            .into_iter()
            .map(|r| r.command)
            .collect();
        assert_eq!(
            written,
            ["follow", "follow.page"],
            "a superseded command's record is written at once"
        );
        let release = session
            .issue(
                now,
                at,
                "l1",
                Command::Release,
                Audience::Class,
                connected.clone(),
            )
            .unwrap();
        assert_eq!(
            session.ack_progress(release.id).unwrap().expected,
            1,
            "t1 only"
        );
        assert_eq!(session.state_for("t1").follow, None);
    }

    #[test]
    fn pages_count_from_one_within_bounds() {
        assert!(page_number(1).is_ok() && page_number(MAX_PAGE).is_ok());
        assert_eq!(page_number(0), Err(BadPage(0)));
        assert!(page_number(MAX_PAGE + 1).is_err());
    }
}
