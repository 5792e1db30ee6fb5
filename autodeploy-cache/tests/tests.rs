//! Integration tests of autodeploy-cache: the proxy in-process on an ephemeral port, a fake
//! Auto Deploy origin over HTTPS, real sockets throughout.

mod support;

mod admin;
mod caching;
mod crash;
mod deploy;
mod disk;
mod faults;
mod load;
mod rfc9111;
mod slow_clients;
mod smuggling;
mod storm;
