//! Images (being written).
