//! The custom event form: `#event-name`, `#event-payload` (JSON), `#event-ack`,
//! `#event-send`, with `#event-error` and `#ack-result` below.
//!
//! The server echoes every event back under the same name, so what was sent shows
//! up twice in the log; with "ack" checked it also answers, and the round trip is
//! shown in `#ack-result`.

use serde_json::Value;
use web_sys::{HtmlInputElement, HtmlTextAreaElement};
use yew::prelude::*;

use crate::app::Slice;
use crate::connection::Command;
use crate::socket::SocketHandle;
use crate::state::{AckResult, AckState, Action, FormState};

/// Event names the Socket.IO client API keeps for itself; the reference client
/// refuses to emit them.
const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// The form's input as an emit: the name, and the payload as the event's single
/// argument (blank payload: no argument).
pub fn parse_event(name: &str, payload: &str) -> Result<(String, Vec<Value>), String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("enter an event name".to_owned());
    }
    if RESERVED_EVENTS.contains(&name) {
        return Err(format!("{name:?} is a reserved event name"));
    }
    let args = if payload.trim().is_empty() {
        Vec::new()
    } else {
        let value: Value =
            serde_json::from_str(payload).map_err(|err| format!("invalid JSON payload: {err}"))?;
        vec![value]
    };
    Ok((name.to_owned(), args))
}

/// What the form shows when the page opens.
const DEFAULT_NAME: &str = "hello";
const DEFAULT_PAYLOAD: &str = r#"{"n": 42}"#;

#[derive(Properties, PartialEq)]
pub struct EventFormProps {
    pub acks: Slice<AckState>,
    pub form: Slice<FormState>,
    pub socket: SocketHandle,
    /// For the form's own actions (its input is not sendable, or was sent).
    pub dispatch: Callback<Action>,
}

#[component]
pub fn EventForm(props: &EventFormProps) -> Html {
    let EventFormProps {
        acks,
        form,
        socket,
        dispatch,
    } = props;
    // Uncontrolled fields, read on submit: a re-render (an ack arriving
    // re-renders the form) never overwrites what is being typed, whichever way
    // it was typed (keyboard, paste, a WebDriver `clear` that fires no `input`).
    let name = use_node_ref();
    let payload = use_node_ref();
    let ack = use_node_ref();

    {
        let (name, payload, ack) = (name.clone(), payload.clone(), ack.clone());
        use_effect_with((), move |()| {
            if let Some(input) = name.cast::<HtmlInputElement>() {
                input.set_value(DEFAULT_NAME);
            }
            if let Some(textarea) = payload.cast::<HtmlTextAreaElement>() {
                textarea.set_value(DEFAULT_PAYLOAD);
            }
            if let Some(checkbox) = ack.cast::<HtmlInputElement>() {
                checkbox.set_checked(true);
            }
        });
    }

    let on_submit = {
        let (name, payload, ack) = (name.clone(), payload.clone(), ack.clone());
        let (socket, dispatch) = (socket.clone(), dispatch.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let name = name
                .cast::<HtmlInputElement>()
                .map(|i| i.value())
                .unwrap_or_default();
            let payload = payload
                .cast::<HtmlTextAreaElement>()
                .map(|t| t.value())
                .unwrap_or_default();
            let ack = ack.cast::<HtmlInputElement>().is_some_and(|c| c.checked());
            match parse_event(&name, &payload) {
                Err(message) => dispatch.emit(Action::FormInvalid { message }),
                Ok((event, args)) => {
                    if socket.send(Command::Emit { event, args, ack }) {
                        dispatch.emit(Action::FormSent);
                    }
                }
            }
        })
    };

    let error = form.error.clone().unwrap_or_default();
    let ack_result = acks.last.as_ref().map(ToString::to_string);
    let ack_class = match &acks.last {
        Some(AckResult::TimedOut { .. }) => "ack-result error",
        _ => "ack-result",
    };

    html! {
        <section class="panel emit">
            <h2>{ "Send an event" }</h2>
            <form onsubmit={on_submit}>
                <label for="event-name">{ "Event name" }</label>
                <input id="event-name" type="text" ref={name} />
                <label for="event-payload">{ "Payload (JSON, blank for none)" }</label>
                <textarea id="event-payload" rows="4" spellcheck="false" ref={payload} />
                <div class="row">
                    <label class="check">
                        <input id="event-ack" type="checkbox" ref={ack} />
                        { " ask for an ack" }
                    </label>
                    <button id="event-send" type="submit">{ "Send" }</button>
                </div>
            </form>
            <p id="event-error" class="error" role="alert">{ error }</p>
            <p id="ack-result" class={ack_class}>{ ack_result.unwrap_or_default() }</p>
            <p class="hint">{ "The server emits the same event back; with an ack it also answers with the same arguments." }</p>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payload_is_one_argument() {
        assert_eq!(
            parse_event(" hello ", r#"{"n": 42}"#),
            Ok(("hello".to_owned(), vec![json!({"n": 42})]))
        );
        assert_eq!(
            parse_event("list", "[1, 2]"),
            Ok(("list".to_owned(), vec![json!([1, 2])]))
        );
        assert_eq!(parse_event("bare", "  "), Ok(("bare".to_owned(), vec![])));
    }

    #[test]
    fn invalid_input_is_explained() {
        let err = parse_event("x", "{nope").expect_err("invalid JSON");
        assert!(err.starts_with("invalid JSON payload"), "{err}");
        assert!(parse_event("  ", "1").is_err());
        assert!(
            parse_event("disconnect", "1")
                .expect_err("reserved")
                .contains("reserved")
        );
    }
}
