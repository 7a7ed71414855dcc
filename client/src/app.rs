//! The root component: owns the page's state slices and the socket, and gives
//! each component the slices it shows (and the socket, to send commands) as
//! props. A component re-renders only when one of its slices changes; the
//! socket handle and the dispatcher stay the same for the page's life.
//!
//! Props rather than a context per slice: the same subscriptions, spelled out
//! below, for 1 KB of wasm less per slice.

use std::ops::Deref;
use std::rc::Rc;

use yew::prelude::*;

use crate::components::{
    ChannelPanel, EventForm, EventLog, HandshakePanel, NewsList, PublishForm, StatusBar,
};
use crate::socket::use_socket;
use crate::state::PageState;

/// A slice of the page state as its readers get it (a prop): the state when
/// [`App`] last rendered. Compared by identity: a reducer that changes a slice
/// makes a new `Rc`, one that does not read an action returns the same, and a
/// component re-renders only in the first case (no field-by-field comparison of
/// states, slower and kilobytes of wasm).
pub struct Slice<T>(Rc<T>);

impl<T> Slice<T> {
    fn of(state: &Rc<T>) -> Self {
        Slice(Rc::clone(state))
    }
}

impl<T> Clone for Slice<T> {
    fn clone(&self) -> Self {
        Slice(Rc::clone(&self.0))
    }
}

impl<T> PartialEq for Slice<T> {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl<T> Deref for Slice<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

#[component]
pub fn App() -> Html {
    let state = use_reducer(PageState::default);
    let dispatch = state.dispatcher().to_callback();
    let socket = use_socket(dispatch.clone(), &state.channels.channels);

    html! {
        <>
            <header class="top">
                <h1>{ "duplex" }<small>{ " — news & echo over Socket.IO v5" }</small></h1>
                <StatusBar connection={Slice::of(&state.connection)} socket={socket.clone()} />
            </header>
            <main class="columns">
                <div class="column">
                    <NewsList news={Slice::of(&state.news)} />
                    <ChannelPanel channels={Slice::of(&state.channels)} socket={socket.clone()} />
                    <PublishForm socket={socket.clone()} />
                    <EventForm acks={Slice::of(&state.acks)} form={Slice::of(&state.form)} {socket} {dispatch} />
                </div>
                <div class="column">
                    <EventLog log={Slice::of(&state.log)} />
                </div>
            </main>
            <HandshakePanel connection={Slice::of(&state.connection)} />
        </>
    }
}
