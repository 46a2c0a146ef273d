//! Names the layers share: a leg's id and a room's name. Every module that uses
//! them sits above this one, so neither signalling nor media has to import the
//! other to speak of a leg or a room.

use std::fmt;

/// A leg: one participant's call (or, later, browser session or room link).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegId(pub u64);

impl fmt::Display for LegId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "L{}", self.0)
    }
}

/// A room's name: 1-64 of `A-Z a-z 0-9 - _ .`, so that it is safe in a
/// Request-URI user part, a log line, a URL path and a file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(String);

impl RoomId {
    /// A valid name, or None.
    pub fn parse(name: &str) -> Option<RoomId> {
        is_room_name(name).then(|| RoomId(name.to_string()))
    }

    /// A name no caller can give (it fails [`RoomId::parse`]), for a room of the
    /// bridge's own (the decoy for unknown rooms).
    pub fn reserved(name: &'static str) -> RoomId {
        debug_assert!(
            !is_room_name(name),
            "a reserved name must not be a room name"
        );
        RoomId(name.to_string())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Rooms are found by name: a map keyed by `RoomId` is looked up with a `&str`.
impl std::borrow::Borrow<str> for RoomId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `name` is a valid room name.
pub fn is_room_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_are_checked() {
        assert_eq!(RoomId::parse("demo-1.a_b").unwrap().as_str(), "demo-1.a_b");
        for bad in ["", "a b", "a/b", "(unknown)", &"x".repeat(65)] {
            assert!(RoomId::parse(bad).is_none(), "{bad}");
        }
    }
}
