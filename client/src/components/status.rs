//! `#status` (exactly one of `connecting`, `connected`, `reconnecting`, `offline`,
//! `refused`, `disconnected`), `#status-detail`, `#transport` (`websocket` or
//! `polling`: what carries the session, or the transport being opened), `#recovery`
//! (`recovered` or `new session` after a reconnect, empty before), and the
//! buttons that end or restart the session.
//!
//! While a reconnection waits, the bar re-renders every 100 ms so the detail's
//! countdown to the next attempt is live; the text itself comes from the pure
//! `ConnectionState::status_line`.

use gloo_timers::callback::Interval;
use yew::prelude::*;

use crate::app::Slice;
use crate::browser;
use crate::connection::Command;
use crate::socket::SocketHandle;
use crate::state::ConnectionState;
use crate::state::connection::transport_label;

/// How often the countdown is redrawn.
const COUNTDOWN_TICK_MS: u32 = 100;

#[derive(Properties, PartialEq)]
pub struct StatusBarProps {
    pub connection: Slice<ConnectionState>,
    pub socket: SocketHandle,
}

#[component]
pub fn StatusBar(props: &StatusBarProps) -> Html {
    let state = &props.connection;

    // Tick only while there is something to count down.
    let redraw = use_force_update();
    let waiting = state.reconnect.as_ref().is_some_and(|r| !r.trying);
    use_effect_with(waiting, move |&waiting| {
        let ticker =
            waiting.then(|| Interval::new(COUNTDOWN_TICK_MS, move || redraw.force_update()));
        move || drop(ticker)
    });

    let on_reconnect = {
        let socket = props.socket.clone();
        Callback::from(move |_: MouseEvent| socket.reconnect())
    };
    let on_disconnect = {
        let socket = props.socket.clone();
        Callback::from(move |_: MouseEvent| {
            socket.send(Command::Disconnect);
        })
    };
    let (status, detail) = state.status_line(browser::now());
    let recovery = state.recovery.map(|r| r.label());
    let transport = state.transport.map(transport_label);

    html! {
        <div class="status-bar">
            <span id="status" class={classes!("status", status.label())}>{ status.label() }</span>
            <span id="status-detail" class="detail">{ detail }</span>
            <span id="transport" class={classes!("transport", transport)}
                title="what carries the connection: a WebSocket, or HTTP long-polling when a WebSocket cannot be opened">
                { transport.unwrap_or_default() }
            </span>
            <span id="recovery" class={classes!("recovery", recovery.map(|r| r.replace(' ', "-")))}
                title="what the server made of the last reconnect">
                { recovery.unwrap_or_default() }
            </span>
            <span class="buttons">
                <button id="disconnect" type="button" disabled={!state.status.is_live()} onclick={on_disconnect}>
                    { "Disconnect" }
                </button>
                <button id="reconnect" type="button" onclick={on_reconnect}>{ "Reconnect" }</button>
            </span>
        </div>
    }
}
