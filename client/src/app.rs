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
    /// The state's revision when this context was made: what tells consumers
    /// that the state changed. (The handle itself always reads the newest state.)
    revision: u64,
    pub socket: SocketHandle,
}

impl PartialEq for AppContext {
    fn eq(&self, other: &Self) -> bool {
        // Every action bumps the revision (`AppState::reduce`): no need for the
        // handle's field-by-field comparison of the states, slower and ~3 KB of wasm.
        self.revision == other.revision && self.socket == other.socket
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
    let context = AppContext {
        revision: state.revision(),
        state,
        socket,
    };

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
