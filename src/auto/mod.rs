//! Automatic backups: the systemd generator and the unprivileged drop-ins
//! that call the stop hook, the stop hook itself, leger's hooks, and status.

pub mod dropin;
pub mod generator;
pub mod hooks;
pub mod status;
pub mod stop_hook;
