//! hangar-guest (being written).
