//! SIP syntax (RFC 3261 §7, §20, §25): messages, header views and stream framing.
//! Transactions and dialogs are state, and live in [`crate::core`].

pub mod digest;
pub mod framing;
pub mod headers;
pub mod message;
pub mod status;

pub use message::{Message, Method, ParseError, StartLine};
