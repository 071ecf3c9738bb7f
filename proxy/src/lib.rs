//! The cutover proxy: a hyper/tower reverse proxy in front of the service that routes to the
//! active colour and, during a cutover, holds requests, drains in-flight ones and switches
//! (see `../shared/DESIGN.md`, invariants 2, 3 and 5). It is built by the proxy issue; until
//! then the `cutover proxy` command says so and exits non-zero.
