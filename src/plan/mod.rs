//! The partition plan (issue: plan).
