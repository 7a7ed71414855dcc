//! `#status` (exactly `connected` once the namespace accepted us), `#status-detail`,
//! and the buttons that end or restart the connection.

use yew::prelude::*;

use crate::app::use_app;
use crate::connection::Command;
use crate::state::Status;

#[component]
pub fn StatusBar() -> Html {
    let app = use_app();
    let status = app.state.status;
    let on_reconnect = {
        let socket = app.socket.clone();
        Callback::from(move |_: MouseEvent| socket.reconnect())
    };
    let on_disconnect = {
        let socket = app.socket.clone();
        Callback::from(move |_: MouseEvent| {
            socket.send(Command::Disconnect);
        })
    };
    let live = status != Status::Disconnected;

    html! {
        <div class="status-bar">
            <span id="status" class={classes!("status", status.label())}>{ status.label() }</span>
            <span id="status-detail" class="detail">{ &app.state.detail }</span>
            <span class="buttons">
                <button id="disconnect" type="button" disabled={!live} onclick={on_disconnect}>
                    { "Disconnect" }
                </button>
                <button id="reconnect" type="button" onclick={on_reconnect}>{ "Reconnect" }</button>
            </span>
        </div>
    }
}
