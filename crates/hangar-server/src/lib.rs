//! hangar-server (being written).
