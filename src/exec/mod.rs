//! (filled by the core engine work)
