//! `#log`: every event in and out, oldest first, `li.entry[data-dir]` each with
//! `.event`, `.payload` (compact JSON) and `.time`.

use yew::prelude::*;

use crate::app::Slice;
use crate::browser;
use crate::state::{Dir, LogState};

#[derive(Properties, PartialEq)]
pub struct EventLogProps {
    pub log: Slice<LogState>,
}

#[component]
pub fn EventLog(props: &EventLogProps) -> Html {
    let log = props.log.entries();
    let list = use_node_ref();

    // Keep the newest entry in view.
    {
        let list = list.clone();
        let newest = log.back().map(|e| e.seq);
        use_effect_with(newest, move |_| {
            if let Some(el) = list.cast::<web_sys::Element>() {
                el.set_scroll_top(el.scroll_height());
            }
        });
    }

    html! {
        <section class="panel log">
            <h2>{ "Event log" }</h2>
            <ol id="log" ref={list}>
                { for log.iter().map(|entry| {
                    let arrow = match entry.dir {
                        Dir::In => "⇣ in",
                        Dir::Out => "⇡ out",
                    };
                    html! {
                        <li key={entry.seq} class="entry" data-dir={entry.dir.as_str()}>
                            <span class="dir">{ arrow }</span>
                            <span class="event">{ &entry.event }</span>
                            <code class="payload">{ &entry.payload }</code>
                            <time class="time">{ browser::clock(entry.at) }</time>
                        </li>
                    }
                }) }
            </ol>
        </section>
    }
}
