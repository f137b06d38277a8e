//! Bridges turn process output into stored messages. Each JSON shape they
//! write is built in exactly one place.

pub mod claude;
pub mod terminal;
