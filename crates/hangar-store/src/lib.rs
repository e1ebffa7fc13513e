//! hangar-store (being written).
