//! A delaying TCP relay on the host: every byte it passes, either way, arrives `delay` later
//! than it was read, in order. The kernel here has no `netem`, so this is how the proxies'
//! links to the nodes get their added latency.

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

/// A relay that runs until the test process ends.
pub struct Relay {
    /// The port it listens on, on every host address (containers reach it through the
    /// network's gateway).
    pub port: u16,
}

impl Relay {
    /// Relays connections to `upstream` (HOST:PORT), each byte delayed by `delay` each way.
    pub fn start(upstream: &str, delay: Duration) -> Self {
        let listener = TcpListener::bind("0.0.0.0:0").expect("binds a relay port");
        let port = listener.local_addr().expect("has an address").port();
        let upstream = upstream.to_owned();
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (from, to) = (
                        from.try_clone().expect("clones a socket"),
                        to.try_clone().expect("clones a socket"),
                    );
                    pipe(from, to, delay);
                }
            }
        });
        Self { port }
    }
}

/// Copies `from` to `to`, each chunk held until `delay` after it was read.
fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (send, receive) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::spawn(move || {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if send
                        .send((Instant::now() + delay, buffer[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    thread::spawn(move || {
        for (due, chunk) in receive {
            thread::sleep(due.saturating_duration_since(Instant::now()));
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
