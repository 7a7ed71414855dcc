//! The feed: two slices, the news received (`#news`, [`NewsState`]) and the
//! event log (`#log`, [`LogState`]), each bounded and kept for the page's life
//! (a new session adds to them).

use std::collections::VecDeque;
use std::rc::Rc;

use protocol::Time;
use protocol::app::NewsItem;
use yew::Reducible;

use super::{Action, payload_text};

/// Most event-log entries kept; older ones are dropped first.
pub const MAX_LOG_ENTRIES: usize = 200;
/// Most news items kept; older ones are dropped first.
pub const MAX_NEWS_ITEMS: usize = 100;

/// Which way an event went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    In,
    Out,
}

impl Dir {
    /// The `data-dir` attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::In => "in",
            Dir::Out => "out",
        }
    }
}

/// One line of the event log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// Unique within the log; the list key.
    pub seq: u64,
    pub dir: Dir,
    pub event: String,
    /// Compact JSON of the arguments (see [`payload_text`]).
    pub payload: String,
    pub at: Time,
}

/// One received news item.
#[derive(Debug, Clone, PartialEq)]
pub struct NewsEntry {
    /// Unique within the news; the list key.
    pub seq: u64,
    pub item: NewsItem,
    pub at: Time,
}

/// A list that keeps its newest `MAX` entries, numbering them as they come.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounded<T, const MAX: usize> {
    entries: VecDeque<T>,
    next_seq: u64,
}

impl<T, const MAX: usize> Default for Bounded<T, MAX> {
    fn default() -> Self {
        Bounded {
            entries: VecDeque::new(),
            next_seq: 0,
        }
    }
}

impl<T, const MAX: usize> Bounded<T, MAX> {
    /// Adds the entry `make` builds from its sequence number, dropping the
    /// oldest one when `MAX` are kept already.
    fn push(&mut self, make: impl FnOnce(u64) -> T) {
        if self.entries.len() >= MAX {
            self.entries.pop_front();
        }
        self.entries.push_back(make(self.next_seq));
        self.next_seq += 1;
    }

    /// Oldest first.
    pub fn entries(&self) -> &VecDeque<T> {
        &self.entries
    }
}

/// The news slice.
pub type NewsState = Bounded<NewsEntry, MAX_NEWS_ITEMS>;

/// The event log slice.
pub type LogState = Bounded<LogEntry, MAX_LOG_ENTRIES>;

impl Reducible for NewsState {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let Action::News { item, at } = action else {
            return self;
        };
        let mut next = Rc::unwrap_or_clone(self);
        next.push(|seq| NewsEntry { seq, item, at });
        Rc::new(next)
    }
}

impl Reducible for LogState {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let Action::Logged {
            dir,
            event,
            args,
            at,
        } = action
        else {
            return self;
        };
        let mut next = Rc::unwrap_or_clone(self);
        next.push(|seq| LogEntry {
            seq,
            dir,
            event,
            payload: payload_text(&args),
            at,
        });
        Rc::new(next)
    }
}
