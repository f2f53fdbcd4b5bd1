//! kaohe-collector: runs at the provincial IT centre. It enrols agents, ingests their
//! reports over TLS into SQLite or PostgreSQL, and scores units (offline from files, too).

pub mod alerts;
pub mod batch;
pub mod bodies;
pub mod cli;
pub mod config;
pub mod conns;
pub mod entries;
pub mod export;
pub mod ingest;
pub mod logging;
pub mod offline;
pub mod render;
pub mod review;
pub mod rollup;
pub mod scores;
pub mod serve;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
pub mod view;
pub mod web;
pub mod xlsx;
