//! End-to-end tests of the pool with rmcp sessions over real loopback HTTP.
//!
//! Every server listens on 127.0.0.1; the kill and restart tests run the
//! echo server as a separate OS process and kill it with SIGKILL. Every wait
//! is bounded.

mod common;

mod connect;
mod eras;
mod faults;
mod isolation;
mod service;
mod session_loss;
mod tls;
