//! hangar-identity (being written).
