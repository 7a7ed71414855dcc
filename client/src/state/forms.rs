//! The forms slice: why the custom event form did not send (`#event-error`).
//! (The channel form's answers are the channels slice's; the publish form shows
//! none.)

use std::rc::Rc;

use yew::Reducible;

use super::Action;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FormState {
    /// `#event-error`.
    pub error: Option<String>,
}

impl Reducible for FormState {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let error = match action {
            Action::FormInvalid { message } => Some(message),
            Action::FormSent => None,
            Action::EmitRefused { event, reason } => {
                Some(format!("{event:?} was not sent: {reason}"))
            }
            _ => return self,
        };
        if error == self.error {
            return self;
        }
        Rc::new(FormState { error })
    }
}
