//! The HTTP face of `cxpipe serve` (webhooks, run-now, status, metrics, status page) served
//! by `cxpipe::serve::http::router` over a fake host, on 127.0.0.1 port 0.

mod cluster;
mod daemon;
mod hooks;
mod host;
mod ops;
mod page;
mod prom;
mod tenants;
