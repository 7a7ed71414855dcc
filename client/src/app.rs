//! The root component: owns the state and the socket, shares both by context.

use yew::prelude::*;

use crate::components::{
    ChannelPanel, EventForm, EventLog, HandshakePanel, NewsList, PublishForm, StatusBar,
};
use crate::socket::{SocketHandle, use_socket};
use crate::state::AppState;

/// What every component can reach: the page state (read it, dispatch actions) and
/// the socket (send commands).
#[derive(Clone)]
pub struct AppContext {
    pub state: UseReducerHandle<AppState>,
    pub socket: SocketHandle,
}

impl PartialEq for AppContext {
    fn eq(&self, other: &Self) -> bool {
        // Every action makes a new state (`AppState::reduce`), so the same state is
        // the same allocation: no need for a field-by-field comparison, which is
        // slower and ~3 KB of wasm.
        std::ptr::eq::<AppState>(&*self.state, &*other.state) && self.socket == other.socket
    }
}

/// The context, from inside [`App`].
#[hook]
pub fn use_app() -> AppContext {
    use_context::<AppContext>().expect("components are rendered inside App's context provider")
}

#[component]
pub fn App() -> Html {
    let state = use_reducer(AppState::default);
    let socket = use_socket(state.dispatcher().to_callback(), &state.channels);
    let context = AppContext { state, socket };

    html! {
        <ContextProvider<AppContext> {context}>
            <header class="top">
                <h1>{ "duplex" }<small>{ " — news & echo over Socket.IO v5" }</small></h1>
                <StatusBar />
            </header>
            <main class="columns">
                <div class="column">
                    <NewsList />
                    <ChannelPanel />
                    <PublishForm />
                    <EventForm />
                </div>
                <div class="column">
                    <EventLog />
                </div>
            </main>
            <HandshakePanel />
        </ContextProvider<AppContext>>
    }
}
