//! One module per subcommand, each with its own `Args` and `run`.

pub mod affected;
pub mod changes;
pub mod compose;
pub mod decision;
pub mod events;
pub mod gc;
pub mod incidents;
pub mod keys;
pub mod lifecycle;
pub mod outbox;
pub mod results;
pub mod run;
pub mod serve;
pub mod simulate;
pub mod status;
pub mod verdict;
pub mod waive;
