//! Whole-system benchmarks: each one runs real nodes, proxies and orchestrators on loopback
//! and compares against a limit measured in the same run (a raw RocksDB copy, nginx, the
//! backend reached directly). Results and the machine they ran on go to `benches/RESULTS.md`.
//! Speed targets live here, never in timed unit tests.
