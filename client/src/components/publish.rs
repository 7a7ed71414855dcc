//! `#publish-text`, `#publish-channel` / `#publish-send`: asks the server to
//! broadcast a news item (the `publish` event) to a channel's subscribers, or to
//! every open page when no channel is given.

use protocol::app::Publish;
use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::connection::Command;
use crate::socket::SocketHandle;

#[derive(Properties, PartialEq)]
pub struct PublishFormProps {
    pub socket: SocketHandle,
}

#[component]
pub fn PublishForm(props: &PublishFormProps) -> Html {
    // Uncontrolled, read on submit (see the event form for why).
    let text = use_node_ref();
    let channel = use_node_ref();

    let on_submit = {
        let (text, channel) = (text.clone(), channel.clone());
        let socket = props.socket.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let Some(input) = text.cast::<HtmlInputElement>() else {
                return;
            };
            let item = input.value().trim().to_owned();
            if item.is_empty() {
                return;
            }
            let channel = channel
                .cast::<HtmlInputElement>()
                .map(|input| input.value().trim().to_owned())
                .filter(|channel| !channel.is_empty());
            if socket.send(Command::Publish(Publish {
                text: item,
                channel,
            })) {
                input.set_value("");
            }
        })
    };

    html! {
        <section class="panel publish">
            <h2>{ "Publish news" }</h2>
            <form class="row" onsubmit={on_submit}>
                <input id="publish-text" type="text" placeholder="tell every open page…" ref={text} />
                <input id="publish-channel" class="channel-field" type="text" placeholder="everyone, or a channel" ref={channel} />
                <button id="publish-send" type="submit">{ "Publish" }</button>
            </form>
            <p class="hint">{ "Sends " }<code>{ "publish {\"text\": …, \"channel\": …}" }</code>
                { "; the server broadcasts it as " }<code>{ "news" }</code>
                { " to the channel's subscribers, or to every page." }</p>
        </section>
    }
}
