//! News channels: `#channel-name` with `#channel-join` / `#channel-leave`, the
//! channels the server says the page is in as `#channels li.channel`, and why a
//! request did not work in `#channel-error`.
//!
//! Channels are rooms on the server. The list is the server's answer to the last
//! join or leave; after a reconnect that lands on a new server session the page
//! joins them again by itself.

use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::app::Slice;
use crate::connection::Command;
use crate::socket::SocketHandle;
use crate::state::ChannelsState;

#[derive(Properties, PartialEq)]
pub struct ChannelPanelProps {
    pub channels: Slice<ChannelsState>,
    pub socket: SocketHandle,
}

#[component]
pub fn ChannelPanel(props: &ChannelPanelProps) -> Html {
    let state = &props.channels;
    // Uncontrolled, read on click (see the event form for why).
    let name = use_node_ref();

    let request = |make: fn(String) -> Command| {
        let name = name.clone();
        let socket = props.socket.clone();
        move || {
            let value = name
                .cast::<HtmlInputElement>()
                .map(|input| input.value())
                .unwrap_or_default();
            // The connection checks the name and answers with `#channel-error`.
            socket.send(make(value));
        }
    };
    let on_join = {
        let join = request(Command::Join);
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            join();
        })
    };
    let on_leave = {
        let leave = request(Command::Leave);
        Callback::from(move |_: MouseEvent| leave())
    };

    html! {
        <section class="panel channels">
            <h2>{ "News channels" }</h2>
            <form class="row" onsubmit={on_join}>
                <input id="channel-name" type="text" placeholder="a channel, e.g. sports" ref={name} />
                <button id="channel-join" type="submit">{ "Join" }</button>
                <button id="channel-leave" type="button" class="secondary" onclick={on_leave}>{ "Leave" }</button>
            </form>
            <p id="channel-error" class="error" role="alert">
                { state.error.clone().unwrap_or_default() }
            </p>
            <ul id="channels">
                { for state.channels.iter().map(|channel| html! {
                    <li key={channel.clone()} class="channel">{ channel }</li>
                }) }
            </ul>
            if state.channels.is_empty() {
                <p class="empty">{ "Not in any channel: news to everyone still arrives." }</p>
            }
        </section>
    }
}
