//! Shared helpers for the workspace-level integration tests.
pub mod bench;
pub mod lab;
