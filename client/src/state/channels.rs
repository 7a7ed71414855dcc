//! The channels slice: the news channels the page is in, as the server last
//! confirmed them (`#channels`), and why the last join or leave did not work
//! (`#channel-error`). Kept across sessions: the page re-joins them when the
//! server starts a new session.

use std::rc::Rc;

use yew::Reducible;

use super::Action;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChannelsState {
    pub channels: Vec<String>,
    pub error: Option<String>,
}

impl Reducible for ChannelsState {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        match action {
            Action::Channels { channels, error } => Rc::new(ChannelsState { channels, error }),
            Action::ChannelError { message } => Rc::new(ChannelsState {
                error: Some(message),
                ..Rc::unwrap_or_clone(self)
            }),
            _ => self,
        }
    }
}
