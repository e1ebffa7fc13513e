//! hangar-agent (being written).
