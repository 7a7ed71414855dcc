//! `#news`: every news item received, `li.news-item` each, with its channel in
//! `.news-channel` (`everyone` for news to all).

use yew::prelude::*;

use crate::app::Slice;
use crate::browser;
use crate::state::NewsState;

#[derive(Properties, PartialEq)]
pub struct NewsListProps {
    pub news: Slice<NewsState>,
}

#[component]
pub fn NewsList(props: &NewsListProps) -> Html {
    let news = props.news.entries();

    html! {
        <section class="panel news">
            <h2>{ "News" }</h2>
            if news.is_empty() {
                <p class="empty">{ "No news yet: the server sends some on connection." }</p>
            }
            <ul id="news">
                { for news.iter().map(|entry| html! {
                    <li key={entry.seq} class="news-item">
                        <span class={classes!("news-channel", entry.item.channel.is_none().then_some("everyone"))}>
                            { entry.item.channel.as_deref().unwrap_or("everyone") }
                        </span>
                        <span class="hello">{ &entry.item.hello }</span>
                        if let Some(from) = &entry.item.from {
                            <span class="from">{ " from " }<code>{ from }</code></span>
                        }
                        <time class="time">{ browser::clock(entry.at) }</time>
                    </li>
                }) }
            </ul>
        </section>
    }
}
