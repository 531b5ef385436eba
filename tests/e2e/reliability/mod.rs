//! What holds when things go wrong or race: the broker's topology, a broker restart, faults
//! caused for real (a crashed database, killed processes, SIGTERM), redelivery, cancellation
//! and ordering. `faults` and `broker_restart` run one at a time (`serial-faults` in
//! `.config/nextest.toml`).

mod broker_cluster;
mod broker_restart;
mod broker_semantics;
mod cancellation;
mod failover;
mod faults;
mod load;
mod ordering;
mod redelivery;
mod reply_log_outage;
mod several_hosts;
