//! Real-time subscriptions: every committed change, in commit order, to the subscribers of
//! its record or table, each message encoded once and shared; lossless across reconnects
//! through the change log (`since`).
//!
//! Message shapes are in [`event`]; the transport-free stream is [`Subscription`]; the
//! WebSocket and SSE endpoints live in [`crate::http`].

pub mod event;
mod hub;
mod subscription;

pub use event::EventKind;
pub(crate) use hub::Hub;
pub use subscription::{DEFAULT_QUEUE, Message, Subscription, Target};
