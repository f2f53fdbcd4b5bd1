//! kaohe-collector: runs at the provincial IT centre. This crate so far scores units
//! offline from files (`score`) and shows the rubric (`rubric show`); ingest, storage
//! and the dashboard follow.

pub mod cli;
pub mod offline;
pub mod render;
pub mod store;
