//! hangar-testkit (being written).
