mod config;
mod dpdk;
mod flow;
mod lb;
mod wire;
fn main() {}
