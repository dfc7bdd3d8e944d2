//! `tweedd`: the tweed node agent.

fn main() {}
