//! The parts of the churn test (`tests/churn.rs`): the runtime's model of
//! each container and its calls ([`model`]), the continuous double-owner
//! check ([`audit`]) and the leak count at the end ([`census`]).

#![allow(dead_code)]

pub mod audit;
pub mod census;
pub mod model;
