//! `#publish-text` / `#publish-send`: asks the server to broadcast a news item to
//! every open page (the `publish` event).

use protocol::app::Publish;
use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::app::use_app;
use crate::connection::Command;

#[component]
pub fn PublishForm() -> Html {
    let app = use_app();
    // Uncontrolled, read on submit (see the event form for why).
    let text = use_node_ref();

    let on_submit = {
        let text = text.clone();
        let socket = app.socket.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let Some(input) = text.cast::<HtmlInputElement>() else {
                return;
            };
            let item = input.value().trim().to_owned();
            if item.is_empty() {
                return;
            }
            if socket.send(Command::Publish(Publish {
                text: item,
                channel: None,
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
                <button id="publish-send" type="submit">{ "Publish" }</button>
            </form>
            <p class="hint">{ "Sends " }<code>{ "publish {\"text\": …}" }</code>
                { "; the server broadcasts it as " }<code>{ "news" }</code>{ " to every page." }</p>
        </section>
    }
}
