//! The one integration-test binary: servers started in-process on port 0 (and the real binary
//! where that is the point), spoken to over real HTTP.

mod backup;
mod binary;
mod catalog;
mod credentials;
mod delivery;
mod durability;
mod edge;
mod environments;
mod errors;
mod harness;
mod hostile;
mod installs;
mod limits;
mod oauth;
mod openapi;
mod operating;
mod pages;
mod peers;
mod receiver;
mod replication;
mod routes;
mod sdks;
mod signing;
mod ssrf;
mod tokens;
mod users;
mod workflows;
