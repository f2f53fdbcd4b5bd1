//! kaohe-agent: observes a bureau's private network from its machine-room host.
//!
//! One module per capability: [`reachability`] (probes and outages), [`isolation`]
//! (internet canaries), [`dual_homed`] (this host's self-check), with the operating system
//! behind [`platform`]. [`cycle`] runs one full round of every configured check and
//! assembles the evidence report.

pub mod config;
pub mod cycle;
pub mod daemon;
pub mod delivery;
pub mod dual_homed;
pub mod enroll;
pub mod inventory;
pub mod isolation;
pub mod leak;
pub mod listener;
pub mod platform;
pub mod reachability;
pub mod report;
pub mod services;
pub mod spool;
pub mod wire;
